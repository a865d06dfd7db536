"""The at-risk projection: before the breach, which orders decide each lateness metric.

An order is at risk when it is seller-fulfilled, not cancelled, has no ship confirmation accepted by the
channel yet, and its ship-by falls before the next moment its node ships (the node's next cutoff on a ship
day; an order not yet released to a node takes the earliest of its account's eligible nodes, and with none
it is at risk once its ship-by has passed). "If these N orders ship late, LSR goes from 2.1% to 3.9%":
each lateness metric of the account (scorecards.models.LATENESS_FORMULAS) is projected from today's
snapshot with the N orders counted late. A metric projected across its warning line opens a
``metric_warning`` case naming the orders, soonest ship-by first, and how many of them decide it; the case
follows the orders at each refresh and is resolved once the projection no longer crosses.

The projection assumes the at-risk orders land in today's window; a window rolls by a day at most before
they are confirmed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Exists, OuterRef
from django.utils import timezone

from channels.models import ChannelAccount, OutboxKind, OutboxMessage, OutboxStatus
from fulfillment.models import Shipment, ShipmentStatus
from fulfillment.routing import RouteNode, ship_moment
from inventory.models import Location
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Order, OrderStatus, Severity
from orders.services import exception_case_open, exception_case_resolve
from scorecards import compute
from scorecards.models import LATENESS_FORMULAS, MetricDefinition, MetricSnapshot, MetricState

AT_RISK_STATUSES = (
    OrderStatus.OPEN,
    OrderStatus.BACKORDERED,
    OrderStatus.ALLOCATED,
    OrderStatus.RELEASED,
    OrderStatus.PARTIALLY_SHIPPED,
)
PRE_SHIP = (ShipmentStatus.RELEASED, ShipmentStatus.ACKNOWLEDGED, ShipmentStatus.PICKING, ShipmentStatus.PACKED)
SIX = Decimal("0.000001")
ACTOR = "scorecards"


@dataclass(frozen=True)
class AtRiskOrder:
    order_id: int
    reference: str
    account_id: int
    ship_by: datetime
    node: str
    ships_at: datetime | None


@dataclass
class Projection:
    account_id: int
    definition: MetricDefinition
    numerator: int
    denominator: int
    value: Decimal | None
    projected_value: Decimal | None
    state: str
    projected_state: str
    orders: list[AtRiskOrder] = field(default_factory=list)
    # How many of ``orders`` (soonest ship-by first) must ship late to cross the warning line.
    deciding: int = 0

    @property
    def crosses(self) -> bool:
        return bool(self.orders) and self.projected_state in (MetricState.WARNING, MetricState.BREACH)


def _ratio(num: int, den: int) -> Decimal | None:
    if den <= 0:
        return None
    return (Decimal(num) / Decimal(den)).quantize(SIX, rounding=ROUND_HALF_UP)


def _route_node(location: Location) -> RouteNode:
    return RouteNode(
        location_id=location.pk,
        code=location.code,
        kind=location.kind,
        timezone=location.timezone or "UTC",
        cutoff=location.cutoff_time,
        ship_days=frozenset(location.ship_days),
        closed_on=frozenset(location.closed_on),
    )


def at_risk_orders(
    *, as_of: datetime | None = None, account_ids: list[int] | None = None
) -> dict[int, list[AtRiskOrder]]:
    """{account id: its at-risk orders, soonest ship-by first}."""
    as_of = as_of or timezone.now()
    confirmed = OutboxMessage.objects.filter(
        order_id=OuterRef("pk"), kind=OutboxKind.SHIP_CONFIRMATION, status=OutboxStatus.SENT
    )
    orders = Order.objects.filter(
        marketplace_fulfilled=False, ship_by__isnull=False, status__in=AT_RISK_STATUSES, placed_at__lte=as_of
    ).filter(~Exists(confirmed))
    if account_ids is not None:
        orders = orders.filter(account_id__in=account_ids)
    rows = list(
        orders.order_by("ship_by", "pk").values("pk", "external_id", "external_reference", "account_id", "ship_by")
    )
    if not rows:
        return {}
    node_of = dict(
        Shipment.objects.filter(order_id__in=[r["pk"] for r in rows], status__in=PRE_SHIP)
        .order_by("order_id", "pk")
        .values_list("order_id", "location_id")
    )
    locations = {loc.pk: loc for loc in Location.objects.filter(is_active=True)}
    moment: dict[int, datetime] = {pk: ship_moment(_route_node(loc), as_of)[1] for pk, loc in locations.items()}
    eligible: dict[int, list[int]] = defaultdict(list)
    through = ChannelAccount.eligible_locations.through
    for account_id, location_id in through.objects.values_list("channelaccount_id", "location_id"):
        if location_id in moment:
            eligible[account_id].append(location_id)
    out: dict[int, list[AtRiskOrder]] = defaultdict(list)
    for row in rows:
        location_id = node_of.get(row["pk"])
        if location_id is not None and location_id in moment:
            ships_at, node = moment[location_id], locations[location_id].code
        elif eligible.get(row["account_id"]):
            best = min(eligible[row["account_id"]], key=lambda pk: moment[pk])
            ships_at, node = moment[best], f"{locations[best].code} (not released)"
        else:
            ships_at, node = None, "no node"
        deadline = ships_at or as_of
        if row["ship_by"] < deadline:
            out[row["account_id"]].append(
                AtRiskOrder(
                    order_id=row["pk"],
                    reference=row["external_reference"] or row["external_id"],
                    account_id=row["account_id"],
                    ship_by=row["ship_by"],
                    node=node,
                    ships_at=ships_at,
                )
            )
    return dict(out)


def _lateness_definitions(kind: str, day) -> list[MetricDefinition]:
    chosen: dict[str, MetricDefinition] = {}
    for definition in MetricDefinition.objects.filter(
        channel_kind=kind, is_active=True, effective_from__lte=day, formula__in=list(LATENESS_FORMULAS)
    ).order_by("code", "effective_from", "version"):
        chosen[definition.code] = definition
    return list(chosen.values())


def _project(definition: MetricDefinition, num: int, den: int, late: int, already_counted: int) -> Decimal | None:
    """The value with ``late`` more orders late, ``already_counted`` of them already in num and den."""
    new = late - already_counted
    if LATENESS_FORMULAS[definition.formula]:
        return _ratio(num + new, den + new)
    return _ratio(num, den + new)


def projections(*, as_of: datetime | None = None, account_ids: list[int] | None = None) -> list[Projection]:
    as_of = as_of or timezone.now()
    today = compute.utc_day(as_of)
    risky = at_risk_orders(as_of=as_of, account_ids=account_ids)
    accounts = ChannelAccount.objects.order_by("pk")
    if account_ids is not None:
        accounts = accounts.filter(pk__in=account_ids)
    out = []
    for account in accounts:
        orders = risky.get(account.pk, [])
        for definition in _lateness_definitions(account.kind, today):
            snap = MetricSnapshot.objects.filter(account=account, code=definition.code, day=today).first()
            num, den = (snap.numerator, snap.denominator) if snap else (0, 0)
            value = _ratio(num, den)
            # Late dispatch already counts an unscanned order late once its ship-by has passed.
            passed = [o for o in orders if o.ship_by < as_of] if definition.formula == "late_dispatch" else []
            projected = _project(definition, num, den, len(orders), len(passed))
            projection = Projection(
                account_id=account.pk,
                definition=definition,
                numerator=num,
                denominator=den,
                value=value,
                projected_value=projected,
                state=definition.state_for(value),
                projected_state=definition.state_for(projected),
                orders=list(orders),
            )
            if projection.crosses:
                for k in range(0, len(orders) + 1):
                    counted = sum(1 for o in orders[:k] if o in passed)
                    if definition.state_for(_project(definition, num, den, k, counted)) in (
                        MetricState.WARNING,
                        MetricState.BREACH,
                    ):
                        projection.deciding = k
                        break
            out.append(projection)
    return out


def _pct(value: Decimal | None) -> str:
    return "no data" if value is None else f"{value * 100:.2f}%"


def _case_key(account_id: int, code: str) -> str:
    return f"metric_warning:account={account_id}:metric={code}"


def at_risk_cases_open(*, as_of: datetime | None = None, account_ids: list[int] | None = None) -> int:
    """Open a metric_warning case for every projection across its warning line, or bring the open one's
    orders up to date; resolve the open case of a metric whose projection no longer crosses (its at-risk
    orders were confirmed, or are too few now to cross). Returns how many cases opened."""
    opened = 0
    names = dict(ChannelAccount.objects.values_list("pk", "name"))
    for p in projections(as_of=as_of, account_ids=account_ids):
        if not p.crosses:
            _at_risk_case_settle(p)
            continue
        d = p.definition
        line = d.seller_threshold if d.seller_threshold is not None else d.warning_line
        if d.seller_threshold is not None:
            line = min(line, d.warning_line) if d.lower_is_better else max(line, d.warning_line)
        title = (
            f"{names.get(p.account_id, p.account_id)} {d.name}: if these {len(p.orders)} orders ship late, "
            f"{_pct(p.value)} → {_pct(p.projected_value)} (warning line {_pct(line)})"
        )
        listed = "\n".join(
            f"- {o.reference} (order {o.order_id}): ship by {o.ship_by:%Y-%m-%d %H:%M} UTC, node {o.node}"
            + (f", ships next at {o.ships_at:%Y-%m-%d %H:%M %Z}" if o.ships_at else "")
            for o in p.orders
        )
        detail = (
            f"{p.deciding} of these orders shipping late "
            f"{'already cross' if p.deciding == 0 else 'cross'} the warning line; now {p.numerator} of "
            f"{p.denominator}.\n{listed}"
        )
        _, created = exception_case_open(
            kind=ExceptionKind.METRIC_WARNING,
            title=title,
            detail=detail,
            severity=Severity.HIGH if p.projected_state == MetricState.BREACH else Severity.MEDIUM,
            account_id=p.account_id,
            due_at=p.orders[0].ship_by,
            actor=ACTOR,
            dedupe_key=_case_key(p.account_id, d.code),
            refresh_text=True,
        )
        opened += int(created)
    return opened


def _at_risk_case_settle(p: Projection) -> None:
    open_case = (
        ExceptionCase.objects.filter(dedupe_key=_case_key(p.account_id, p.definition.code))
        .exclude(status=CaseStatus.RESOLVED)
        .values_list("pk", flat=True)
        .first()
    )
    if open_case is None:
        return
    note = (
        f"No longer at risk: with the {len(p.orders)} order(s) at risk now all shipping late, "
        f"{p.definition.name} would be {_pct(p.projected_value)}, inside its warning line."
        if p.orders
        else f"No longer at risk: no order of this account is at risk of a late {p.definition.name} now."
    )
    exception_case_resolve(case=open_case, note=note, actor=ACTOR)


def order_scorecard_impact(order_ids: list[int]) -> dict[int, float]:
    """Metric points (percentage points, summed over the account's lateness metrics) an order costs if it
    ships late rather than on time: 100 / (denominator + 1) per metric. The fulfilment board sorts releasable
    picks by it (registered with config.kernel.priorities)."""
    if not order_ids:
        return {}
    today = compute.utc_day(timezone.now())
    account_of = dict(Order.objects.filter(pk__in=list(order_ids)).values_list("pk", "account_id"))
    kinds = dict(ChannelAccount.objects.filter(pk__in=set(account_of.values())).values_list("pk", "kind"))
    points: dict[int, float] = {}
    for account_id, kind in kinds.items():
        codes = [d.code for d in _lateness_definitions(kind, today)]
        dens = dict(
            MetricSnapshot.objects.filter(account_id=account_id, day=today, code__in=codes).values_list(
                "code", "denominator"
            )
        )
        points[account_id] = sum(100.0 / (dens.get(code, 0) + 1) for code in codes)
    return {order_id: round(points.get(account_id, 0.0), 3) for order_id, account_id in account_of.items()}
