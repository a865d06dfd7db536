# Fulfilment's channel node policies hold their account by id (fulfillment 0006 dropped the foreign key Django
# made): channels, which owns the accounts, keeps the reference in the database. A policy goes with its account
# (CASCADE, as before). Deferred to the end of the transaction, like Django's own foreign keys.

from django.db import migrations

ADD_SQL = """
ALTER TABLE fulfillment_channelnodepolicy ADD CONSTRAINT channelnodepolicy_account_id_fk_channelaccount
  FOREIGN KEY (account_id) REFERENCES channels_channelaccount (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""
DROP_SQL = """
ALTER TABLE fulfillment_channelnodepolicy DROP CONSTRAINT IF EXISTS channelnodepolicy_account_id_fk_channelaccount;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("channels", "0013_order_account_foreign_keys"),
        ("fulfillment", "0006_channel_policy_account_id"),
    ]

    operations = [migrations.RunSQL(ADD_SQL, DROP_SQL)]
