# ChannelNodePolicy.account_id holds the channel account by id: fulfillment names no table of channels (channels
# listens to fulfillment's signals, so a relation back would close a circle). A database made before that has a
# foreign-key constraint on the column (the column, its type and its index stay as they are): drop it here; the
# app that owns accounts adds its own constraint after this. Nothing to do on a fresh database.

from django.db import migrations

TABLE, COLUMN = "fulfillment_channelnodepolicy", "account_id"


def drop_account_foreign_key(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        for name, info in connection.introspection.get_constraints(cursor, TABLE).items():
            if info["foreign_key"] and info["columns"] == [COLUMN]:
                schema_editor.execute(
                    f"ALTER TABLE {schema_editor.quote_name(TABLE)} DROP CONSTRAINT {schema_editor.quote_name(name)}"
                )


class Migration(migrations.Migration):
    dependencies = [
        ("fulfillment", "0005_shipment_ship_by_key"),
    ]

    operations = [migrations.RunPython(drop_account_foreign_key, migrations.RunPython.noop)]
