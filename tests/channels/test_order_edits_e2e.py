"""Order edits end to end on the channels other than Amazon (whose edits test_order_edits.py follows): an
address edited at the channel after the order reached a node is on the order and at the node, through a
real sync; a line that came without its SKU is mapped, and its hold released, once the channel sends it."""

from __future__ import annotations

import pytest

from orders.models import HoldKind, OrderEvent, OrderStatus
from tests.channels.e2e_helpers import SHIPMENTS, admin, external_id, node_client, node_for, route, sync, synced_order

pytestmark = pytest.mark.django_db

NEW_ADDRESS = {"line1": "500 Howard St", "postal_code": "94107"}


def _edit_address(sandbox, account, made) -> None:
    """The buyer corrects the street and postcode at the channel (each sandbox's admin hook)."""
    if account.kind == "shopify":
        admin(sandbox, f"/_sandbox/orders/{made.order_id}/edit", {"address": NEW_ADDRESS})
    elif account.kind == "tiktok":
        admin(sandbox, "/_sandbox/tiktok/address", {"order_id": made.order_id, **NEW_ADDRESS})
    else:
        admin(sandbox, "/_sandbox/edit", {"order_id": made.order_id, "address": NEW_ADDRESS})


@pytest.fixture(params=["shopify", "tiktok", "walmart", "ebay"])
def channel(request):
    return request.getfixturevalue(f"{request.param}_sandbox"), request.getfixturevalue(f"{request.param}_account")


def test_an_address_edited_at_the_channel_after_release_reaches_the_order_and_its_node(channel, skus, api_client):
    sandbox, account = channel
    # given: an order released to a node
    (made,) = sandbox.state.generate(1, lines=2, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    node = node_for(account, [made])
    order = synced_order(account, made)
    shipment = route(order)
    client = node_client(api_client, node)
    before = client.get(f"{SHIPMENTS}{shipment.pk}/").json()["ship_to"]
    assert before["line1"] == made.address["line1"]
    # when: the address is edited at the channel and the next sync runs
    _edit_address(sandbox, account, made)
    sync(account)
    # then: the order has it, with an event showing before and after
    order.refresh_from_db()
    assert (order.ship_to.line1, order.ship_to.postal_code) == ("500 Howard St", "94107")
    event = OrderEvent.objects.get(order=order, kind="channel_edited")
    assert event.data["before"]["ship_to"]["line1"] == before["line1"]
    assert event.data["after"]["ship_to"]["line1"] == "500 Howard St"
    # and the node reads the new address and an address_changed event for the shipment
    shown = client.get(f"{SHIPMENTS}{shipment.pk}/").json()
    assert (shown["ship_to"]["line1"], shown["ship_to"]["postal_code"]) == ("500 Howard St", "94107")
    (changed,) = shown["events"]
    assert changed["kind"] == "address_changed" and changed["after"]["line1"] == "500 Howard St"
    # and the same order shown again tells the node nothing twice
    sync(account)
    assert len(client.get(f"{SHIPMENTS}{shipment.pk}/").json()["events"]) == 1


def _send_without_sku(sandbox, account, made) -> set[str]:
    """The channel sends the order's first line without its SKU. TikTok keeps the line's sku_id and leaves
    seller_sku empty (the sandbox derives sku_id from the SKU, so the SKU is blanked as the order is
    rendered); the others just have no SKU on the line. Returns the SKUs hidden (clear it to stop)."""
    hidden = {made.lines[0].sku}
    if account.kind != "tiktok":
        with sandbox.state.lock:
            made.lines[0].sku = ""
        return hidden
    render = sandbox.render

    def without_sku(order):
        rendered = render(order)
        for item in rendered.get("line_items", []):
            if item["seller_sku"] in hidden:
                item["seller_sku"] = ""
        return rendered

    sandbox.render = without_sku
    return hidden


@pytest.fixture(params=["shopify", "tiktok", "ebay"])
def nosku_channel(request):
    return request.getfixturevalue(f"{request.param}_sandbox"), request.getfixturevalue(f"{request.param}_account")


def test_a_line_whose_sku_arrives_later_is_mapped_and_released(nosku_channel, skus):
    sandbox, account = nosku_channel
    # given: an order whose first line the channel sends without a SKU
    (made,) = sandbox.state.generate(1, lines=2, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    sku = made.lines[0].sku
    hidden = _send_without_sku(sandbox, account, made)
    order = synced_order(account, made)
    (line,) = order.lines.filter(channel_sku__startswith="NOSKU:")
    assert line.sku_id is None
    assert order.on_hold and order.holds.get(released_at__isnull=True).kind == HoldKind.UNMAPPED_SKU
    # when: the channel sends the SKU (the listing fixed at the channel) and the next sync runs
    if account.kind == "shopify":
        admin(sandbox, f"/_sandbox/orders/{made.order_id}/edit", {"lines": {made.lines[0].line_id: {"sku": sku}}})
    else:
        with sandbox.state.lock:
            made.lines[0].sku = sku
            hidden.clear()
            sandbox.state.touch(made)
    sync(account)
    # then: the line is mapped and the hold released
    line.refresh_from_db()
    order.refresh_from_db()
    assert line.channel_sku == sku and line.sku.code == sku
    assert not order.on_hold and order.status == OrderStatus.OPEN
    assert order.external_id == external_id(account, made)
