from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from tests.factories import StockLevelFactory


@pytest.mark.django_db
@pytest.mark.parametrize(("on_hand", "reserved"), [(5, 6), (5, -1), (-1, 0)])
def test_database_rejects_a_direct_update_that_breaks_the_stock_check(on_hand, reserved):
    # given
    level = StockLevelFactory(on_hand=5, reserved=2)
    # when: raw SQL, past every service
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE inventory_stocklevel SET on_hand = %s, reserved = %s WHERE id = %s", [on_hand, reserved, level.pk]
        )
    # then
    level.refresh_from_db()
    assert (level.on_hand, level.reserved) == (5, 2)
