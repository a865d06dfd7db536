"""Shared steps of the end-to-end channel tests: a real sync from a sandbox, routing to a node with stock,
the node API as a warehouse drives it, the outbox relayed to the sandbox."""

from __future__ import annotations

import httpx
from django.utils import timezone

from channels.models import OutboxKind, OutboxMessage, SyncStatus
from channels.outbox import outbox_relay
from channels.sync import sync_account_run
from fulfillment import services as fulfillment
from fulfillment.models import Carrier, Shipment
from inventory import services as inventory
from inventory.models import Sku
from orders.models import Order
from tests.factories import LocationFactory

SHIPMENTS = "/api/v1/fulfillment/shipments/"


def sync(account):
    """One scheduled sync of the account, which must not fail."""
    run = sync_account_run(account_id=account.pk)
    assert run.status in (SyncStatus.SUCCEEDED, SyncStatus.PARTIAL), (run.status, run.error)
    return run


def external_id(account, made) -> str:
    """Waybill's id of a sandbox order (Shopify's are GraphQL global ids)."""
    return f"gid://shopify/Order/{made.order_id}" if account.kind == "shopify" else made.order_id


def synced_order(account, made) -> Order:
    sync(account)
    return Order.objects.get(account_id=account.pk, external_id=external_id(account, made))


def node_for(account, made_orders, *, code: str = "DAL1", units: int = 50):
    """A node the account ships from, stocked with every SKU of the sandbox orders."""
    node = LocationFactory(code=code)
    account.eligible_locations.add(node)
    for made in made_orders:
        for line in made.lines:
            sku = Sku.objects.get(code=line.sku)
            inventory.stock_receive(sku=sku, location=node, quantity=units, actor="setup")
    return node


def route(order: Order) -> Shipment:
    assert fulfillment.order_route(order_id=order.pk, actor="router").routed
    return Shipment.objects.get(order=order)


def node_client(api_client, node):
    key = fulfillment.node_token_create(location=node, name="wms", actor="admin")[1]
    api_client.credentials(HTTP_AUTHORIZATION=f"Node {key}")
    return api_client


def ship_at_node(client, shipment, *, tracking: str = "1Z999AA10123456784"):
    """The node picks, packs and ships the shipment through the node API; returns the ship answer."""
    Carrier.objects.update_or_create(
        code="UPS",
        defaults={
            "name": "UPS",
            "is_active": True,
            "channel_codes": {"amazon": "UPS", "walmart": "UPS", "ebay": "UPS", "tiktok": "UPS", "shopify": "UPS"},
        },
    )
    for step in ("picking", "packed"):
        answer = client.post(f"{SHIPMENTS}{shipment.pk}/{step}/")
        assert answer.status_code == 200, answer.content
    body = {"carrier": "UPS", "tracking_number": tracking, "shipped_at": timezone.now().isoformat()}
    return client.post(f"{SHIPMENTS}{shipment.pk}/shipped/", body, format="json")


def relay(account) -> None:
    outbox_relay(account_id=account.pk)


def messages(order: Order, kind: str = OutboxKind.CANCELLATION) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(order=order, kind=kind).order_by("pk"))


def admin(sandbox, path: str, body: dict) -> dict:
    """An admin hook of the sandbox, over HTTP."""
    answer = httpx.post(f"{sandbox.base_url}{path}", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()
