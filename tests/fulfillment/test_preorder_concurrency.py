"""Preorder promises under concurrency: routers in real OS processes backorder preorder lines against the
same incoming units at once, on PostgreSQL, through the live order routing path. Together they never
promise more than is coming."""

from __future__ import annotations

import pytest
from django.db.models import F, Sum

from fulfillment import services
from inventory import services as inventory
from orders.models import ExceptionCase, ExceptionKind, LineStatus, OrderLine, OrderStatus
from tests.factories import (
    ChannelAccountFactory,
    InboundLineFactory,
    InboundShipmentFactory,
    LocationFactory,
    OrderFactory,
    OrderLineFactory,
    SkuFactory,
)
from tests.processes import run_in_processes

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

ROUTERS = 8


def _route(order_id: int) -> tuple[str, str]:
    [result] = services.orders_route(order_ids=[order_id], actor="router:race")
    return "ok", result.outcome


def test_routers_racing_for_the_last_incoming_units_never_promise_more_than_is_coming():
    # given a preorder SKU with nothing on hand and 4 units coming on a PO (2 already promised) ...
    account = ChannelAccountFactory(kind="amazon")
    node = LocationFactory(code="PRE1", postal_code="75261", timezone="America/Chicago")
    account.eligible_locations.set([node])
    sku = SkuFactory(is_preorder=True)
    InboundLineFactory(shipment=InboundShipmentFactory(location=node), sku=sku, quantity_expected=4)
    earlier = OrderLineFactory(order=OrderFactory(account=account, status=OrderStatus.OPEN), sku=sku, quantity=2)
    services.orders_route(order_ids=[earlier.order_id], actor="test:setup")
    earlier.refresh_from_db()
    assert earlier.status == LineStatus.BACKORDERED
    assert inventory.preorder_promisable(sku_id=sku.pk) == 2
    # ... and one order of 2 units per router, each of which alone could take the last 2
    orders = [
        OrderLineFactory(order=OrderFactory(account=account, status=OrderStatus.OPEN), sku=sku, quantity=2).order_id
        for _ in range(ROUTERS)
    ]

    # when every router routes its order at once
    outcomes = run_in_processes(_route, [(order_id, order_id) for order_id in orders], processes=ROUTERS)

    # then no router failed, exactly one order was promised the last units ...
    assert [detail for outcome, detail in outcomes.values() if outcome != "ok"] == []
    backordered = OrderLine.objects.filter(order_id__in=orders, status=LineStatus.BACKORDERED)
    assert backordered.count() == 1
    # ... the others wait in the exception queue, and the promises never exceed what is coming
    assert ExceptionCase.objects.filter(order_id__in=orders, kind=ExceptionKind.INSUFFICIENT_STOCK).count() == (
        ROUTERS - 1
    )
    promised = OrderLine.objects.filter(sku=sku, status=LineStatus.BACKORDERED).aggregate(
        units=Sum(F("quantity") - F("quantity_cancelled") - F("quantity_shipped"))
    )["units"]
    assert promised == 4
    assert inventory.preorder_promisable(sku_id=sku.pk) == 0
