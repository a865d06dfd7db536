# The orders list's ship-by sort keyset-pages on COALESCE(ship_by, far future), id (orders.models.SHIP_BY_KEY).

import datetime
import django.db.models.functions.comparison
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0010_order_filter_index'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='order',
            index=models.Index(django.db.models.functions.comparison.Coalesce('ship_by', models.Value(datetime.datetime(9999, 1, 1, 0, 0, tzinfo=datetime.timezone.utc))), models.F('id'), name='order_ship_by_key'),
        ),
    ]
