"""The demo's past: 90 days of finished orders per demo account, so the scorecards have trends with shape.

Every order is one the account's channel would have sent and Waybill would have fulfilled: placed, shipped
from a node with a tracking number, the ship confirmation accepted by the channel (a ``sent`` outbox
message), carrier scans, delivery; some late (a bad fortnight three to five weeks ago), some cancelled by
the seller for stock or by the buyer, some never scanned, some refunded or returned, a few touched by hand
more than twice. Marketplace-fulfilled orders (AFN, WFS, FBT) are mixed in and count nowhere.

Seeded in bulk as the rest of the demo data set is (``seed_demo``), once, deterministic for a seed. The
Amazon account's history is also what the Amazon sandbox recorded (``amazon_history_orders``), so its
Account Health report and Waybill's numbers describe the same orders. The returns and refunds of the history
are the returns app's rows: ``seed_history`` hands them over as ``HistoryReturn``s to the writer the caller
passes (``returns.demo_history``, through the ``seed_demo_history`` command).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from channels.models import ChannelAccount, ChannelKind, OutboxKind, OutboxMessage, OutboxStatus
from channels.sandbox.amazon import AmazonState
from channels.sandbox.base import SandboxLine, SandboxOrder
from fulfillment.models import Carrier, Shipment, ShipmentLine, ShipmentStatus, TrackingEvent
from inventory.models import Location, Sku
from orders.models import CancelInitiator, LineStatus, Order, OrderEvent, OrderLine, OrderStatus

HISTORY_DAYS = 90
HISTORY_NUMBER_BASE = 800_000
ORDERS_PER_DAY = 14
PREFIX = "HIST-"
ACTOR = "seed:demo-history"
OPS_USER = "ops.demo"
MARKETPLACE_FULFILLED = {ChannelKind.AMAZON, ChannelKind.WALMART, ChannelKind.TIKTOK}


@dataclass(frozen=True)
class HistoryReturn:
    """A history order the buyer returned (``returned``: every line, received) or was refunded for in full.
    ``reason_roll`` in [0, 1) picks the return's reason, so the history stays replayable for a seed."""

    order: Order
    lines: list[OrderLine]
    returned: bool
    refund: bool
    reason_roll: float


def history_external_id(kind: str, n: int) -> str:
    """Amazon's history orders carry Amazon's own 3-7-7 ids (the sandbox serves them); others a prefix."""
    if kind == ChannelKind.AMAZON:
        return AmazonState().order_id_for(HISTORY_NUMBER_BASE + n)
    return f"{PREFIX}{kind.upper()}-{n:05d}"


def _late_share(days_ago: int, kind: str) -> float:
    """Shape: a bad fortnight 22-36 days ago (a node short of staff), Walmart recovering slowest."""
    if 22 <= days_ago <= 36:
        return 0.07 if kind != ChannelKind.WALMART else 0.09
    if 8 <= days_ago <= 12 and kind == ChannelKind.AMAZON:
        return 0.05  # a second bump inside the 10-day LSR window's memory
    return 0.012


def seed_history(
    *,
    accounts: list[ChannelAccount],
    seed: int = 7,
    now: datetime | None = None,
    days: int = HISTORY_DAYS,
    per_day: int = ORDERS_PER_DAY,
    returns_seed: Callable[[list[HistoryReturn]], None] | None = None,
) -> int:
    """Write the history for ``accounts``; returns the number of orders. Skips accounts that have it.
    The history's returns and refunds go to ``returns_seed`` (none are written without it)."""
    now = now or timezone.now()
    rng = random.Random(seed)  # noqa: S311 -- demo data, replayable for a seed
    skus = list(Sku.objects.order_by("pk")[:60])
    nodes = list(Location.objects.filter(can_ship=True).exclude(kind="store").order_by("pk"))
    if not skus or not nodes:
        return 0
    carrier, _ = Carrier.objects.get_or_create(code="UPS", defaults={"name": "UPS"})
    ops = get_user_model().objects.filter(username=OPS_USER).first()
    if ops is None:
        ops = get_user_model().objects.create_user(username=OPS_USER, password=None)
    made = 0
    for account in accounts:
        if Order.objects.filter(account_id=account.pk, external_reference__startswith=PREFIX).exists():
            continue
        made += _account_history(rng, account, skus, nodes, carrier, ops, now, days, per_day, returns_seed)
    if made:
        history_tables_analyze(HISTORY_TABLES)
    return made


# The tables the history loads in bulk (thousands of rows into tables that may have held none): their statistics
# are refreshed at once, as seed_million does, so the next statements over them (the scorecards' facts of every
# order, the console's lists) are not planned from an empty table's statistics until autovacuum comes by: a
# facts refresh planned that way ran for more than ten minutes over 6,000 orders.
HISTORY_TABLES = (Order, OrderLine, OrderEvent, Shipment, ShipmentLine, TrackingEvent, OutboxMessage)


def history_tables_analyze(models) -> None:
    """ANALYZE these models' tables; inside the caller's transaction it counts the rows it has written."""
    tables = ", ".join(connection.ops.quote_name(model._meta.db_table) for model in models)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {tables}")


def _account_history(rng, account, skus, nodes, carrier, ops, now, days: int, per_day: int, returns_seed) -> int:
    specs = []
    for days_ago in range(days, 0, -1):
        for _ in range(max(per_day + rng.randint(-4, 4), 1)):
            placed = now - timedelta(days=days_ago, hours=rng.uniform(0, 23))
            specs.append((days_ago, placed))
    orders, plans = [], []
    for n, (days_ago, placed) in enumerate(specs):
        ship_by = placed + timedelta(days=rng.choice([1, 1, 2]))
        deliver_by = ship_by + timedelta(days=rng.choice([3, 4, 5]))
        afn = account.kind in MARKETPLACE_FULFILLED and rng.random() < 0.06
        roll = rng.random()
        cancel = "seller" if roll < 0.012 else ("buyer" if roll < 0.04 else "")
        late = not cancel and rng.random() < _late_share(days_ago, account.kind)
        confirmed = (
            ship_by + timedelta(hours=rng.uniform(1, 20)) if late else ship_by - timedelta(hours=rng.uniform(3, 20))
        )
        confirmed = min(confirmed, now - timedelta(minutes=5))
        delivered = None
        if not cancel and confirmed + timedelta(days=3) < now:
            on_time = rng.random() < (0.85 if late else 0.985)
            delivered = (
                deliver_by - timedelta(hours=rng.uniform(1, 40))
                if on_time
                else deliver_by + timedelta(hours=rng.uniform(2, 48))
            )
            delivered = min(delivered, now - timedelta(minutes=1))
        status = OrderStatus.CANCELLED if cancel else (OrderStatus.DELIVERED if delivered else OrderStatus.SHIPPED)
        chosen = rng.sample(skus, rng.choice([1, 1, 2]))
        quantities = [rng.choice([1, 1, 2]) for _ in chosen]
        prices = [Decimal(rng.randint(1299, 8999)) / 100 for _ in chosen]
        orders.append(
            Order(
                account=account,
                external_id=history_external_id(account.kind, n),
                external_reference=f"{PREFIX}{n:05d}",
                status=status,
                channel_status="Shipped" if not cancel else "Canceled",
                marketplace_fulfilled=afn,
                placed_at=placed,
                paid_at=placed,
                ship_by=ship_by,
                deliver_by=deliver_by,
                currency="USD",
                total_amount=sum(q * p for q, p in zip(quantities, prices, strict=True)),
                cancel_initiator=cancel,
                source_updated_at=placed,
            )
        )
        plans.append(
            dict(
                chosen=chosen,
                quantities=quantities,
                prices=prices,
                cancel=cancel,
                confirmed=confirmed,
                delivered=delivered,
                afn=afn,
                node=rng.choice(nodes),
                scanned=rng.random() > 0.01,
                scan_hours=rng.uniform(0.3, 1.5),
                refund=not cancel and rng.random() < 0.025,
                returned=not cancel and rng.random() < 0.025,
                touches=0 if cancel or rng.random() > 0.03 else rng.choice([1, 2, 3, 4]),
                reason_roll=rng.random(),
            )
        )
    Order.objects.bulk_create(orders, batch_size=500)
    lines = []
    for order, plan in zip(orders, plans, strict=True):
        for i, (sku, q, p) in enumerate(zip(plan["chosen"], plan["quantities"], plan["prices"], strict=True), 1):
            lines.append(
                OrderLine(
                    order=order,
                    external_id=str(i),
                    sku=sku,
                    channel_sku=sku.code,
                    title=sku.name,
                    quantity=q,
                    quantity_cancelled=q if plan["cancel"] else 0,
                    quantity_shipped=0 if plan["cancel"] else q,
                    quantity_returned=q if plan["returned"] else 0,
                    unit_price=p,
                    currency="USD",
                    status=LineStatus.CANCELLED
                    if plan["cancel"]
                    else (LineStatus.DELIVERED if plan["delivered"] else LineStatus.SHIPPED),
                    ship_by=order.ship_by,
                    deliver_by=order.deliver_by,
                )
            )
    OrderLine.objects.bulk_create(lines, batch_size=1000)
    by_order: dict[int, list[OrderLine]] = {}
    for line in lines:
        by_order.setdefault(line.order_id, []).append(line)
    events, shipments, messages = [], [], []
    for order, plan in zip(orders, plans, strict=True):
        events.append(OrderEvent(order=order, kind="created", to_status=order.status, actor=f"sync:{account.name}"))
        if plan["cancel"]:
            events.append(
                OrderEvent(
                    order=order,
                    kind="lines_cancelled",
                    to_status=OrderStatus.CANCELLED,
                    actor=f"sync:{account.name}" if plan["cancel"] == "buyer" else "router",
                    reason="Buyer cancelled" if plan["cancel"] == "buyer" else "No stock at any node",
                    data={"cancel_initiator": plan["cancel"]},
                )
            )
        for t in range(plan["touches"]):
            kind = ["hold_placed", "hold_released", "address_changed", "rerouted"][t % 4]
            events.append(OrderEvent(order=order, kind=kind, actor=OPS_USER, actor_user_id=ops.pk, reason="Demo"))
        if plan["cancel"] or plan["afn"]:
            continue
        shipments.append(
            Shipment(
                order=order,
                location=plan["node"],
                status=ShipmentStatus.DELIVERED if plan["delivered"] else ShipmentStatus.SHIPPED,
                carrier=carrier,
                tracking_number=f"1ZDEMO{order.pk:09d}",
                released_at=order.placed_at + timedelta(hours=1),
                shipped_at=plan["confirmed"] - timedelta(minutes=30),
                promised_delivery_at=order.deliver_by,
                delivered_at=plan["delivered"],
                ship_by=order.ship_by,
                last_scan_at=plan["confirmed"] + timedelta(hours=plan["scan_hours"]) if plan["scanned"] else None,
            )
        )
        messages.append(
            OutboxMessage(
                account=account,
                kind=OutboxKind.SHIP_CONFIRMATION,
                dedupe_key=f"history:{order.pk}",
                payload={"order_id": order.pk, "history": True},
                status=OutboxStatus.SENT,
                attempts=1,
                next_attempt_at=plan["confirmed"],
                sent_at=plan["confirmed"],
                order=order,
            )
        )
    OrderEvent.objects.bulk_create(events, batch_size=1000)
    Shipment.objects.bulk_create(shipments, batch_size=500)
    OutboxMessage.objects.bulk_create(messages, batch_size=500)
    plan_of = {order.pk: plan for order, plan in zip(orders, plans, strict=True)}
    ship_lines, scans = [], []
    for shipment in shipments:
        plan = plan_of[shipment.order_id]
        for line in by_order[shipment.order_id]:
            ship_lines.append(
                ShipmentLine(shipment=shipment, order_line=line, quantity=line.quantity, quantity_shipped=line.quantity)
            )
        scans.append(
            TrackingEvent(
                shipment=shipment,
                carrier=carrier,
                status="label_created",
                occurred_at=shipment.shipped_at,
                source="carrier:ups",
                dedupe_key=f"history:{shipment.pk}:label",
            )
        )
        if plan["scanned"]:
            scans.append(
                TrackingEvent(
                    shipment=shipment,
                    carrier=carrier,
                    status="in_transit",
                    occurred_at=shipment.last_scan_at,
                    source="carrier:ups",
                    dedupe_key=f"history:{shipment.pk}:transit",
                )
            )
        if shipment.delivered_at:
            scans.append(
                TrackingEvent(
                    shipment=shipment,
                    carrier=carrier,
                    status="delivered",
                    occurred_at=shipment.delivered_at,
                    source="carrier:ups",
                    dedupe_key=f"history:{shipment.pk}:delivered",
                )
            )
    ShipmentLine.objects.bulk_create(ship_lines, batch_size=1000)
    TrackingEvent.objects.bulk_create(scans, batch_size=1000)
    if returns_seed is not None:
        returns_seed(
            [
                HistoryReturn(
                    order=order,
                    lines=by_order[order.pk],
                    returned=plan["returned"],
                    refund=plan["refund"],
                    reason_roll=plan["reason_roll"],
                )
                for order, plan in zip(orders, plans, strict=True)
                if not (plan["afn"] or plan["cancel"]) and (plan["returned"] or plan["refund"])
            ]
        )
    return len(orders)


def amazon_history_orders(account: ChannelAccount) -> list[SandboxOrder]:
    """The Amazon account's history as Amazon recorded it: each order with its package, created (accepted)
    when Waybill's ship confirmation was, and who cancelled it."""
    orders = (
        Order.objects.filter(account_id=account.pk, external_reference__startswith=PREFIX)
        .prefetch_related("lines")
        .order_by("pk")
    )
    accepted = dict(
        OutboxMessage.objects.filter(
            account=account, kind=OutboxKind.SHIP_CONFIRMATION, status=OutboxStatus.SENT, order__in=orders
        ).values_list("order_id", "sent_at")
    )
    tracking = dict(Shipment.objects.filter(order__in=orders).values_list("order_id", "tracking_number"))
    out = []
    for order in orders:
        n = int(order.external_reference.removeprefix(PREFIX))
        lines = sorted(order.lines.all(), key=lambda line: line.pk)
        packages = []
        if order.pk in accepted:
            packages.append(
                {
                    "packageReferenceId": str(n + 1),
                    "createdTime": accepted[order.pk].strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "packageStatus": {"status": "SHIPPED"},
                    "carrier": "UPS",
                    "shipTime": accepted[order.pk].strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "trackingNumber": tracking.get(order.pk, ""),
                    "packageItems": [{"orderItemId": line.external_id, "quantity": line.quantity} for line in lines],
                }
            )
        out.append(
            SandboxOrder(
                number=HISTORY_NUMBER_BASE + n,
                order_id=order.external_id,
                created_at=order.placed_at,
                updated_at=order.placed_at,
                status="cancelled" if order.status == OrderStatus.CANCELLED else "shipped",
                lines=[
                    SandboxLine(
                        line_id=line.external_id,
                        sku=line.channel_sku,
                        title=line.title,
                        quantity=line.quantity,
                        unit_price=line.unit_price,
                        shipped=line.quantity_shipped,
                        cancelled=line.quantity_cancelled,
                    )
                    for line in lines
                ],
                buyer_name="Demo Buyer",
                # Every field a sandbox renders: a later change (a return, a drift) puts the order in its reads.
                address={
                    "line1": "1 Demo Street",
                    "line2": "",
                    "city": "Dallas",
                    "region": "TX",
                    "postal_code": "75201",
                    "country_code": "US",
                    "phone": "+1 555 0100",
                },
                fulfilled_by="AMAZON" if order.marketplace_fulfilled else "MERCHANT",
                ship_by=order.ship_by,
                deliver_by=order.deliver_by,
                packages=packages,
                cancel_reason="NoInventory" if order.cancel_initiator == CancelInitiator.SELLER else "",
            )
        )
    return out
