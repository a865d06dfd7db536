"""The demo data set `make demo` loads: what the README promises, consistent with the invariants."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from channels.models import ChannelAccount, Listing
from inventory.models import Location
from orders.models import Order, OrderStatus
from tests.inventory.helpers import assert_stock_invariants


@pytest.mark.django_db
def test_seed_demo_loads_once_and_keeps_the_stock_invariants():
    # when
    call_command("seed_demo")
    # then
    assert sorted(ChannelAccount.objects.values_list("kind", flat=True)) == [
        "amazon",
        "ebay",
        "shopify",
        "tiktok",
        "walmart",
    ]
    assert {"store", "threepl", "warehouse"} <= set(Location.objects.values_list("kind", flat=True))
    assert Location.objects.count() == 4
    statuses = set(Order.objects.values_list("status", flat=True))
    assert {OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.RELEASED, OrderStatus.SHIPPED} <= statuses
    assert 250 <= Order.objects.count() <= 500
    # Shopify and TikTok inventory pushes address items by the channel's ids: every listing has them.
    assert not Listing.objects.filter(account__kind__in=["shopify", "tiktok"], external_variant_id="").exists()
    # and they know where to push stock before the first push (the demo's worker may push before its sandboxes
    # have started): Shopify's location and TikTok's warehouse at the sandboxes
    assert dict(
        ChannelAccount.objects.filter(kind__in=["shopify", "tiktok"]).values_list("kind", "inventory_location_id")
    ) == {"shopify": "gid://shopify/Location/1", "tiktok": "7068517275539719942"}
    assert_stock_invariants()
    # and a second run changes nothing
    orders = Order.objects.count()
    call_command("seed_demo")
    assert Order.objects.count() == orders


def _demo_sandbox(kind: str):
    from channels.sandbox import sandbox_class

    fast = {"rate": 10_000.0, "burst": 10_000}
    if kind == "shopify":
        fast = {"restore_rate": 100_000.0, "maximum_available": 20_000.0}
    return sandbox_class(kind)(**fast)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["amazon", "walmart", "shopify", "ebay", "tiktok"])
def test_every_demo_order_exists_in_its_sandbox(kind, request, serve_sandbox):
    from channels.management.commands.seed_demo import plant_demo_orders
    from channels.services import connector_for

    if kind == "shopify":
        request.getfixturevalue("shopify_schema_built")
    # given: the demo data, and the account's sandbox started as run_sandboxes starts it
    call_command("seed_demo")
    account = ChannelAccount.objects.get(kind=kind)
    app = _demo_sandbox(kind)
    app.state.generate(5)
    serve_sandbox(app)
    ChannelAccount.objects.filter(pk=account.pk).update(api_base_url=app.base_url)
    account.refresh_from_db()
    # when
    planted = plant_demo_orders(app)
    # then: every demo order of the account is at the channel, with the same ids, lines and quantities
    orders = list(Order.objects.filter(account_id=account.pk).prefetch_related("lines"))
    assert planted == len(orders) > 0
    connector = connector_for(account)
    for order in orders:
        parsed = connector.parse_order(connector.get_order(order.external_id))
        assert parsed.external_id == order.external_id
        assert sorted((line.external_id, line.quantity) for line in parsed.lines) == sorted(
            (line.external_id, line.quantity) for line in order.lines.all()
        )
        shipped = {line.external_id: line.quantity_shipped for line in parsed.lines}
        assert shipped == {line.external_id: line.quantity_shipped for line in order.lines.all()}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["amazon", "walmart", "shopify", "ebay", "tiktok"])
def test_demo_orders_ship_and_cancel_without_a_parked_message(kind, serve_sandbox):
    from django.utils import timezone

    from channels.management.commands.seed_demo import plant_demo_orders
    from channels.models import OutboxStatus
    from channels.outbox import cancellation_enqueue, outbox_relay, ship_confirmation_enqueue

    # given: the demo data and its channel
    call_command("seed_demo")
    account = ChannelAccount.objects.get(kind=kind)
    app = _demo_sandbox(kind)
    serve_sandbox(app)
    ChannelAccount.objects.filter(pk=account.pk).update(api_base_url=app.base_url)
    plant_demo_orders(app)
    open_orders = list(
        Order.objects.filter(account_id=account.pk, status__in=[OrderStatus.OPEN, OrderStatus.RELEASED]).order_by("pk")
    )
    to_ship, to_cancel = open_orders[:3], open_orders[3:6]
    messages = []
    # when: some are shipped and others cancelled
    for index, order in enumerate(to_ship):
        messages.append(
            ship_confirmation_enqueue(
                order=order,
                package_reference=str(index + 1),
                carrier_code="UPS",
                tracking_number=f"1Z999AA1{index:08d}",
                shipped_at=timezone.now(),
                lines=[(line.external_id, line.quantity) for line in order.lines.all()],
            )
        )
    for order in to_cancel:
        messages.append(cancellation_enqueue(order=order, lines=[], reason="NoInventory", dedupe_key="all"))
    outbox_relay(account_id=account.pk)
    # then: the channel took every one
    for message in messages:
        message.refresh_from_db()
        assert message.status == OutboxStatus.SENT, message.last_error
    assert len(app.state.shipments) == len(to_ship) and len(app.state.cancellations) == len(to_cancel)
