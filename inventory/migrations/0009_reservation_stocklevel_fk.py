"""A reservation's (sku, location) references its StockLevel row with one composite foreign key, checked at
the statement, instead of two deferred single-column keys to Sku and Location checked at COMMIT.

The reservation statement inserts the row while it holds the stock row's lock (the row it has just
updated), so every key check runs inside that lock: one index probe of the locked stock row replaces a
probe and a row lock of the SKU and of the location. Integrity holds as before and more: the stock row's
own foreign keys keep the SKU and location, and a stock row with reservations can't be deleted.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0008_stock_count_proposals"),
    ]

    operations = [
        migrations.AlterField(
            model_name="reservation",
            name="location",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="reservations",
                to="inventory.location",
            ),
        ),
        migrations.AlterField(
            model_name="reservation",
            name="sku",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="reservations",
                to="inventory.sku",
            ),
        ),
        migrations.RunSQL(
            sql="""
            ALTER TABLE inventory_reservation
              ADD CONSTRAINT reservation_stocklevel_fk FOREIGN KEY (sku_id, location_id)
              REFERENCES inventory_stocklevel (sku_id, location_id) NOT DEFERRABLE
            """,
            reverse_sql="ALTER TABLE inventory_reservation DROP CONSTRAINT reservation_stocklevel_fk",
        ),
    ]
