# Order.account_id and ExceptionCase.account_id hold the channel account by id: orders names no other app's
# table. A database made before that has a foreign-key constraint on each column (the column, its type and
# its indexes stay as they are): drop it here; the app that owns accounts adds its own constraint after this.
# Nothing to do on a fresh database.

from django.db import migrations

COLUMNS = (("orders_order", "account_id"), ("orders_exceptioncase", "account_id"))


def drop_account_foreign_keys(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        for table, column in COLUMNS:
            constraints = connection.introspection.get_constraints(cursor, table)
            for name, info in constraints.items():
                if info["foreign_key"] and info["columns"] == [column]:
                    schema_editor.execute(
                        f"ALTER TABLE {schema_editor.quote_name(table)} DROP CONSTRAINT {schema_editor.quote_name(name)}"
                    )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0011_order_ship_by_key"),
    ]

    operations = [migrations.RunPython(drop_account_foreign_keys, migrations.RunPython.noop)]
