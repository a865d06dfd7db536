# The shipments queue's ship-by sort keyset-pages on COALESCE(ship_by, far future), id (SHIPMENT_SHIP_BY_KEY).

import datetime
import django.db.models.functions.comparison
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('fulfillment', '0004_routing_config_tokens_idempotency'),
        ('inventory', '0009_reservation_stocklevel_fk'),
        ('orders', '0011_order_ship_by_key'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='shipment',
            index=models.Index(django.db.models.functions.comparison.Coalesce('ship_by', models.Value(datetime.datetime(9999, 1, 1, 0, 0, tzinfo=datetime.timezone.utc))), models.F('id'), name='shipment_ship_by_key'),
        ),
    ]
