"""The database's own check that an order line is never under return for more units than it shipped.

Held units of a line: the full quantity of its lines on open RMAs, the received quantity on completed ones,
nothing on rejected or cancelled ones. The trigger locks the order line row (FOR SHARE: a lock, never a
write of orders' table), so two RMAs created at once for the same line cannot both pass.
"""

from django.db import migrations

GUARD = """
CREATE OR REPLACE FUNCTION returns_returnline_guard() RETURNS trigger AS $$
DECLARE
    shipped integer;
    held integer;
    line_ref text;
BEGIN
    SELECT quantity_shipped, external_id INTO shipped, line_ref
      FROM orders_orderline WHERE id = NEW.order_line_id FOR SHARE;
    SELECT COALESCE(SUM(CASE WHEN r.status = 'completed' THEN l.quantity_received ELSE l.quantity END), 0)
      INTO held
      FROM returns_returnline l JOIN returns_returnauthorization r ON r.id = l.rma_id
     WHERE l.order_line_id = NEW.order_line_id AND r.status NOT IN ('rejected', 'cancelled');
    IF held > shipped THEN
        RAISE EXCEPTION 'returnline_exceeds_shipped: order line % (%): % unit(s) under return, % shipped',
            NEW.order_line_id, line_ref, held, shipped
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER returns_returnline_guard
    AFTER INSERT OR UPDATE OF quantity, order_line_id ON returns_returnline
    FOR EACH ROW EXECUTE FUNCTION returns_returnline_guard();
"""

DROP = """
DROP TRIGGER IF EXISTS returns_returnline_guard ON returns_returnline;
DROP FUNCTION IF EXISTS returns_returnline_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("returns", "0002_lifecycle_receipts_refunds"), ("orders", "0005_returns_statuses")]

    operations = [migrations.RunSQL(GUARD, DROP)]
