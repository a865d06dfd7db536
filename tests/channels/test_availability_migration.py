"""ChannelAvailability moved from inventory to channels: a database migrated before the move keeps its rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from channels.models import ChannelAvailability
from tests.factories import ChannelAccountFactory, SkuFactory

MOVE = ("channels", "0007_channel_availability")
BEFORE = ("channels", "0006_buyer_cancel_requests")


@pytest.mark.django_db(transaction=True)
def test_a_row_written_before_the_move_survives_it():
    # given a database from before the move: the table and its row exist, the move is not applied yet
    row = ChannelAvailability.objects.create(
        account=ChannelAccountFactory(), sku=SkuFactory(), quantity=5, last_pushed_quantity=3, needs_push=True
    )
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE], fake=True)  # unrecorded, the table untouched
    try:
        # when the move is applied
        executor.loader.build_graph()
        executor.migrate([MOVE])
    finally:
        # The migrations after BEFORE were only unrecorded (fake), never undone: record them again.
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes(), fake=True)
    # then the row is there, unchanged
    row.refresh_from_db()
    assert (row.quantity, row.last_pushed_quantity, row.needs_push) == (5, 3, True)
    assert MOVE in executor.loader.applied_migrations
