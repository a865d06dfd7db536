# ChannelAvailability moves from inventory to channels (inventory no longer depends on channels).
#
# The table keeps its name, inventory_channelavailability, and its rows. inventory's initial migrations
# no longer create it, so this migration records the model in channels' state and creates the table only
# where it does not exist yet: on a fresh database. A database migrated before the move already has the
# table (with the same columns, constraints and index names) and keeps it untouched.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

TABLE = "inventory_channelavailability"


def create_table_if_missing(apps, schema_editor):
    if TABLE not in schema_editor.connection.introspection.table_names():
        schema_editor.create_model(apps.get_model("channels", "ChannelAvailability"))


def drop_table(apps, schema_editor):
    schema_editor.delete_model(apps.get_model("channels", "ChannelAvailability"))


class Migration(migrations.Migration):

    dependencies = [
        ('channels', '0006_buyer_cancel_requests'),
        ('inventory', '0006_ship_days_are_weekdays'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ChannelAvailability',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('quantity', models.IntegerField(default=0)),
                        ('last_pushed_quantity', models.IntegerField(blank=True, null=True)),
                        ('last_pushed_at', models.DateTimeField(blank=True, null=True)),
                        ('computed_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('needs_push', models.BooleanField(default=False)),
                        ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='availabilities', to='channels.channelaccount')),
                        ('sku', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='channel_availabilities', to='inventory.sku')),
                    ],
                    options={
                        'verbose_name_plural': 'channel availabilities',
                        'db_table': TABLE,
                        'indexes': [models.Index(condition=models.Q(('needs_push', True)), fields=['account', 'sku'], name='channelavailability_needs_push')],
                        'constraints': [models.UniqueConstraint(fields=('account', 'sku'), name='channelavailability_unique_account_sku'), models.CheckConstraint(condition=models.Q(('quantity__gte', 0)), name='channelavailability_quantity_non_negative')],
                    },
                ),
            ],
        ),
        # After the state operation, so that the model is in the state it reads.
        migrations.RunPython(create_table_if_missing, drop_table),
    ]
