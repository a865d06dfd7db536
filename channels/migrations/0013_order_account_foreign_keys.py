# Orders holds an order's and an exception case's channel account by id (orders 0012 dropped the foreign keys
# Django made): channels, which owns the accounts, keeps the references in the database. An account with orders
# cannot be deleted (RESTRICT, what PROTECT was); its exception cases go with it (CASCADE). Deferred to the end
# of the transaction, like Django's own foreign keys.

from django.db import migrations

ADD_SQL = """
ALTER TABLE orders_order ADD CONSTRAINT order_account_id_fk_channelaccount
  FOREIGN KEY (account_id) REFERENCES channels_channelaccount (id) ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE orders_exceptioncase ADD CONSTRAINT exceptioncase_account_id_fk_channelaccount
  FOREIGN KEY (account_id) REFERENCES channels_channelaccount (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""
DROP_SQL = """
ALTER TABLE orders_exceptioncase DROP CONSTRAINT IF EXISTS exceptioncase_account_id_fk_channelaccount;
ALTER TABLE orders_order DROP CONSTRAINT IF EXISTS order_account_id_fk_channelaccount;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("channels", "0012_inventory_push_slot"),
        ("orders", "0012_account_id_not_a_relation"),
    ]

    operations = [migrations.RunSQL(ADD_SQL, DROP_SQL)]
