"""The return-quantity guard serialises itself per order line.

0003's guard locked the order line FOR SHARE, which two transactions may hold at once: two return lines
inserted at the same moment for the same order line (outside the services, which lock the order first) could
each count only their own row and both pass. The guard now takes a transaction advisory lock per order line
before it counts, so the second waits for the first to commit and counts its row.
"""

from django.db import migrations

BODY = """
CREATE OR REPLACE FUNCTION returns_returnline_guard() RETURNS trigger AS $$
DECLARE
    shipped integer;
    held integer;
    line_ref text;
BEGIN
    {lock}
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
"""

# (7320, line id): the namespace is listed in returns/services/common.py. Ids past 2^31 share keys (more waiting,
# never less safety).
SERIALISED = BODY.replace(
    "{lock}", "PERFORM pg_advisory_xact_lock(7320, (NEW.order_line_id % 2147483647)::integer);"
)
PREVIOUS = BODY.replace("{lock}", "")


class Migration(migrations.Migration):
    dependencies = [("returns", "0004_return_sync_state")]

    operations = [migrations.RunSQL(SERIALISED, PREVIOUS)]
