"""A generated order history for the scorecards tests: plain Python specs, written to the database in bulk,
and an independent plain-Python computation of every formula over the same specs (not the SQL)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from channels.models import ChannelAccount, OutboxMessage
from fulfillment.models import Shipment, TrackingEvent
from orders.models import Order, OrderLine, OrderStatus
from returns.models import Refund, ReturnAuthorization

SELLER_REASONS = {"damaged", "defective", "wrong_item", "not_as_described"}


@dataclass
class Scan:
    status: str
    at: datetime


@dataclass
class ShipmentSpec:
    status: str = "shipped"
    kind: str = "ship"
    tracking_number: str = "1Z"
    promised_at: datetime | None = None
    delivered_at: datetime | None = None
    scans: list[Scan] = field(default_factory=list)


@dataclass
class OrderSpec:
    account: ChannelAccount
    placed_at: datetime
    ship_by: datetime | None
    deliver_by: datetime | None = None
    mfn: bool = True
    status: str = "shipped"
    cancel_initiator: str = ""
    # (status, sent_at) of ship-confirmation outbox messages; other kinds are noise
    confirmations: list[tuple[str, datetime | None]] = field(default_factory=list)
    noise_messages: list[tuple[str, str, datetime | None]] = field(default_factory=list)  # (kind, status, sent_at)
    shipments: list[ShipmentSpec] = field(default_factory=list)
    refunds: list[tuple[str, str | None]] = field(default_factory=list)  # (status, rma reason or None)
    returns: list[tuple[str, str]] = field(default_factory=list)  # (reason, status)
    label: str = ""
    order_id: int | None = None


# --- plain Python, independent of the SQL ---------------------------------------------------------------


def _day(moment: datetime | None) -> date | None:
    return moment.astimezone(UTC).date() if moment else None


def order_facts(o: OrderSpec, as_of: datetime) -> dict:
    sent = [at for status, at in o.confirmations if status == "sent" and at is not None and at <= as_of]
    confirmed_at = min(sent) if sent else None
    live = [s for s in o.shipments if s.status != "cancelled" and s.kind != "pickup"]
    promised = [s.promised_at for s in live if s.promised_at]
    delivered = [s.delivered_at for s in live]
    scans = [sc.at for s in o.shipments for sc in s.scans if sc.status != "label_created" and sc.at <= as_of]
    rmas_for_refund = [reason for status, reason in o.refunds if status != "failed"]
    return {
        "confirmed_at": confirmed_at,
        "has_tracking": any(s.tracking_number for s in live),
        "promise": o.deliver_by or (min(promised) if promised else None),
        "delivered_at": max(delivered) if live and all(delivered) else None,
        "scan_at": min(scans) if scans else None,
        "refunded": bool(rmas_for_refund),
        "seller_refunded": any(reason is None for reason in rmas_for_refund)
        or any(reason in SELLER_REASONS and status not in ("rejected", "cancelled") for reason, status in o.returns),
    }


def formula_membership(formula: str, o: OrderSpec, f: dict, as_of: datetime) -> tuple[date | None, bool, bool]:
    """(basis day, in the denominator, in the numerator) of one order for one formula."""
    ship_by, confirmed, scan = o.ship_by, f["confirmed_at"], f["scan_at"]
    if formula in ("seller_cancel", "refund", "seller_refund", "order_defect_report"):
        num = {
            "seller_cancel": o.cancel_initiator == "seller",
            "refund": f["refunded"],
            "seller_refund": f["seller_refunded"],
            "order_defect_report": False,
        }[formula]
        return _day(o.placed_at), True, num
    if formula == "valid_tracking":
        return _day(confirmed), confirmed is not None, confirmed is not None and scan is not None
    if formula in ("on_time_delivery", "on_time_delivery_orders"):
        promise, delivered = f["promise"], f["delivered_at"]
        den = confirmed is not None and (delivered is not None or (promise is not None and promise < as_of))
        if formula == "on_time_delivery":
            den = den and f["has_tracking"]
        num = den and delivered is not None and promise is not None and delivered <= promise
        return _day(promise), den, num
    if ship_by is None:
        return None, False, False
    if formula == "late_dispatch":
        den = o.status != "cancelled" and (ship_by < as_of or scan is not None)
        num = den and ((scan is not None and scan > ship_by) or (scan is None and ship_by < as_of))
        return _day(ship_by), den, num
    den = confirmed is not None
    if formula == "late_confirmation":
        num = den and confirmed > ship_by
    elif formula == "on_time_confirmation":
        num = den and confirmed <= ship_by
    elif formula == "late_scan":
        num = den and (scan or confirmed) > ship_by
    elif formula == "tracking_uploaded":
        num = den and confirmed <= ship_by and f["has_tracking"]
    else:
        raise AssertionError(formula)
    return _day(ship_by), den, num


def expected_counts(orders: list[OrderSpec], account: ChannelAccount, formula: str, day: date, window: int, as_of):
    first = day - timedelta(days=window - 1)
    num = den = 0
    members = []
    for o in orders:
        if o.account.pk != account.pk or not o.mfn or o.placed_at >= as_of:
            continue
        basis, in_den, in_num = formula_membership(formula, o, order_facts(o, as_of), as_of)
        if basis is None or not first <= basis <= day or not in_den:
            continue
        den += 1
        num += int(in_num)
        members.append((o, in_num))
    return num, den, members


def expected_state(comparison: str, threshold, warning, seller, value: Decimal | None) -> str:
    if value is None:
        return "no_data"
    breach = {
        "lt": value >= threshold,
        "lte": value > threshold,
        "gt": value <= threshold,
        "gte": value < threshold,
    }[comparison]
    if breach:
        return "breach"
    lines = [line for line in (warning, seller) if line is not None]
    if comparison in ("lt", "lte") and any(value > line for line in lines):
        return "warning"
    if comparison in ("gt", "gte") and any(value < line for line in lines):
        return "warning"
    return "ok"


def ratio(num: int, den: int) -> Decimal | None:
    return None if den == 0 else (Decimal(num) / Decimal(den)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


# --- an at-risk account -------------------------------------------------------------------------------------


def one_late_of_forty(account: ChannelAccount) -> tuple[datetime, list[OrderSpec]]:
    """``now`` (10:00 UTC today: a node without a cutoff ships by the end of its day) and 40 orders of
    ``account`` due yesterday, one of them confirmed late: 1 of 40 (2.5%), not above Amazon's 2.5% LSR line."""
    now = datetime.combine(timezone.now().date(), datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)
    ship_by = now - timedelta(days=1)
    history = [
        OrderSpec(
            account=account,
            placed_at=ship_by - timedelta(days=1),
            ship_by=ship_by,
            confirmations=[("sent", ship_by + timedelta(seconds=1 if i == 0 else -60))],
        )
        for i in range(40)
    ]
    return now, history


def released(account: ChannelAccount, *, placed_at: datetime, ship_by: datetime) -> OrderSpec:
    """An order released to its node, not shipped yet (no tracking), due at ``ship_by``."""
    return OrderSpec(
        account=account,
        placed_at=placed_at,
        ship_by=ship_by,
        status=OrderStatus.RELEASED,
        shipments=[ShipmentSpec(status="released", tracking_number="")],
    )


# --- writing the history ----------------------------------------------------------------------------------


def write(orders: list[OrderSpec], location) -> None:
    """Bulk-write the specs (test set-up only: the services are tested elsewhere)."""
    created = Order.objects.bulk_create(
        Order(
            account=o.account,
            external_id=f"T-{i}",
            status=o.status,
            marketplace_fulfilled=not o.mfn,
            placed_at=o.placed_at,
            ship_by=o.ship_by,
            deliver_by=o.deliver_by,
            currency="USD",
            total_amount=Decimal("20.00"),
            cancel_initiator=o.cancel_initiator,
        )
        for i, o in enumerate(orders)
    )
    for o, row in zip(orders, created, strict=True):
        o.order_id = row.pk
    OrderLine.objects.bulk_create(
        OrderLine(
            order_id=o.order_id,
            external_id="1",
            channel_sku="SKU-1",
            quantity=2,
            quantity_cancelled=2 if o.cancel_initiator else 0,
            unit_price=Decimal("10.00"),
            currency="USD",
        )
        for o in orders
    )
    messages = []
    for o in orders:
        for n, (status, at) in enumerate(o.confirmations):
            messages.append(("ship_confirmation", f"ship:{o.order_id}:{n}", status, at, o))
        for n, (kind, status, at) in enumerate(o.noise_messages):
            messages.append((kind, f"{kind}:{o.order_id}:{n}", status, at, o))
    OutboxMessage.objects.bulk_create(
        OutboxMessage(
            account=o.account, kind=kind, dedupe_key=key, payload={}, status=status, sent_at=at, order_id=o.order_id
        )
        for kind, key, status, at, o in messages
    )
    shipment_specs = [(o, s) for o in orders for s in o.shipments]
    shipments = Shipment.objects.bulk_create(
        Shipment(
            order_id=o.order_id,
            location=location,
            status=s.status,
            kind=s.kind,
            tracking_number=s.tracking_number,
            promised_delivery_at=s.promised_at,
            delivered_at=s.delivered_at,
        )
        for o, s in shipment_specs
    )
    TrackingEvent.objects.bulk_create(
        TrackingEvent(shipment=row, status=scan.status, occurred_at=scan.at, source="tms", dedupe_key=f"{row.pk}:{n}")
        for (o, s), row in zip(shipment_specs, shipments, strict=True)
        for n, scan in enumerate(s.scans)
    )
    for o in orders:
        rmas = {}
        for n, (reason, status) in enumerate(o.returns):
            rmas[reason] = ReturnAuthorization.objects.create(
                rma_number=f"RMA-{o.order_id}-{n}", order_id=o.order_id, reason=reason, status=status, created_by="t"
            )
        for status, reason in o.refunds:
            rma = None
            if reason is not None:
                rma = rmas.get(reason) or ReturnAuthorization.objects.create(
                    rma_number=f"RMA-{o.order_id}-r{reason}", order_id=o.order_id, reason=reason, created_by="t"
                )
            Refund.objects.create(
                order_id=o.order_id, rma=rma, amount=Decimal("5.00"), currency="USD", status=status, created_by="t"
            )


def random_history(rng: random.Random, accounts: list[ChannelAccount], as_of: datetime, per_account: int) -> list:
    """Orders over the 45 days before ``as_of`` with every outcome the formulas distinguish."""
    out = []
    for account in accounts:
        for _ in range(per_account):
            placed = as_of - timedelta(days=rng.uniform(0, 45))
            ship_by = placed + timedelta(hours=rng.choice([12, 24, 48, 72]))
            promise = ship_by + timedelta(days=rng.choice([2, 3, 5]))
            o = OrderSpec(
                account=account,
                placed_at=placed,
                ship_by=ship_by if rng.random() > 0.03 else None,
                deliver_by=promise if rng.random() > 0.3 else None,
                mfn=rng.random() > 0.08,
            )
            roll = rng.random()
            if roll < 0.08:
                o.status = "cancelled"
                o.cancel_initiator = rng.choice(["seller", "buyer", "marketplace"])
            elif roll < 0.18:
                o.status = rng.choice(["open", "allocated", "released"])
            else:
                lateness = timedelta(hours=rng.choice([-20, -3, -1, 0, 1, 5, 30]))
                sent_at = ship_by + lateness
                if sent_at <= as_of:
                    o.confirmations.append(("sent", sent_at))
                    if rng.random() < 0.2:  # a retry that was accepted later: the first acceptance counts
                        o.confirmations.append(("sent", sent_at + timedelta(hours=2)))
                else:
                    o.confirmations.append(("pending", None))
                if rng.random() < 0.1:
                    o.confirmations.append(("failed", None))
                o.noise_messages.append(("inventory", "sent", ship_by + timedelta(hours=-30)))
                shipment = ShipmentSpec(
                    tracking_number="" if rng.random() < 0.05 else f"1Z{rng.randint(1, 10**9)}",
                    promised_at=promise + timedelta(hours=rng.choice([0, 6])),
                )
                shipment.scans.append(Scan("label_created", sent_at - timedelta(minutes=10)))
                if rng.random() > 0.1:
                    shipment.scans.append(Scan("in_transit", sent_at + timedelta(hours=rng.choice([-2, 1, 8, 26]))))
                if rng.random() < 0.6:
                    shipment.delivered_at = promise + timedelta(hours=rng.choice([-30, -1, 0, 1, 20]))
                    shipment.status = "delivered"
                o.shipments.append(shipment)
                if rng.random() < 0.15:
                    o.shipments.append(ShipmentSpec(status="cancelled", tracking_number="", scans=[]))
                if rng.random() < 0.08:
                    o.refunds.append((rng.choice(["pending", "confirmed", "failed"]), None))
                if rng.random() < 0.08:
                    reason = rng.choice(["damaged", "no_longer_needed", "defective"])
                    status = rng.choice(["requested", "received", "rejected"])
                    o.returns.append((reason, status))
                    if rng.random() < 0.5:
                        o.refunds.append(("confirmed", reason))
                if rng.random() < 0.05:
                    o.status = "partially_shipped"
                    o.cancel_initiator = rng.choice(["seller", "buyer"])
            out.append(o)
    return out
