"""Fulfilment reads: the order-routing inputs (a constant number of queries for any batch of orders),
the queues the node API and the console list, and the routing simulator's history."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Count, Exists, F, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.kernel import accounts
from config.kernel.priorities import order_priorities
from fulfillment.geo import point_of
from fulfillment.models import (
    ChannelNodePolicy,
    NodeCapacityDay,
    RoutingConfig,
    RoutingDecision,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
    TrackingEvent,
)
from fulfillment.routing import MAX_CLOSED_DAYS, RouteLine, RouteNode, RouteOrder, RouteRules, RoutingPlan
from fulfillment.status import HOLDS_STOCK, IN_FLIGHT, PRE_SHIP
from inventory.models import Location, Reservation, ReservationStatus, StockLevel
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, LineStatus, Order, OrderLine, OrderStatus
from orders.services import ship_to_usable

ROUTING_EXCEPTION_KINDS = (
    ExceptionKind.NO_NODE,
    ExceptionKind.OVER_CAPACITY,
    ExceptionKind.SHIP_BY_UNREACHABLE,
    ExceptionKind.INSUFFICIENT_STOCK,
)
ROUTABLE_LINE_STATUSES = (LineStatus.OPEN, LineStatus.BACKORDERED, LineStatus.PENDING, LineStatus.ALLOCATED)


# --- routing configuration ---------------------------------------------------------------------------


def routing_config_active() -> RoutingConfig:
    """The active rules; a default row is created on first use so a fresh install routes."""
    config = RoutingConfig.objects.filter(is_active=True).first()
    if config is None:
        config, _ = RoutingConfig.objects.get_or_create(name="default", defaults={"is_active": True})
    return config


def route_rules(config: RoutingConfig | None = None) -> RouteRules:
    """The active config and its channel policies as the core's RouteRules (two queries)."""
    config = config or routing_config_active()
    kinds: dict[int, set[str]] = defaultdict(set)
    accounts: dict[int, set[int]] = defaultdict(set)
    for kind, account_id, location_id in ChannelNodePolicy.objects.filter(config=config).values_list(
        "channel_kind", "account_id", "location_id"
    ):
        if account_id:
            accounts[location_id].add(account_id)
        elif kind:
            kinds[location_id].add(kind)
    return RouteRules(
        version=config.version_label,
        max_shipments=config.max_shipments,
        allow_line_split=config.allow_line_split,
        ship_partial=config.ship_partial,
        allow_late=config.allow_late,
        tie_breakers=tuple(config.tie_breakers),
        distance_band_km=config.distance_band_km,
        blocked_kinds={loc: frozenset(v) for loc, v in kinds.items()},
        blocked_accounts={loc: frozenset(v) for loc, v in accounts.items()},
    )


# --- routing inputs ----------------------------------------------------------------------------------


@dataclass
class NetworkSnapshot:
    """Nodes, who may use them, their capacity use and the ATP of some SKUs: shared by a batch of orders.

    Loaded in five queries whatever the batch size; the router updates ATP and capacity in memory as it
    reserves, and the database's guarded statements stay the judge of any race.
    """

    nodes: dict[int, RouteNode]
    eligible: dict[int, set[int]]  # account_id -> location ids
    capacity_used: dict[int, dict[date, int]]
    atp: dict[tuple[int, int], int]
    rules: RouteRules
    config: RoutingConfig
    loaded_at: datetime = field(default_factory=timezone.now)
    # The SKUs whose ATP was read (a SKU stocked nowhere has no entry in ``atp`` but needs no new read).
    atp_skus: set[int] = field(default_factory=set)
    _nodes_by_account: dict[int, list[RouteNode]] = field(default_factory=dict, repr=False)

    def nodes_for(self, account_id: int) -> list[RouteNode]:
        """The nodes as one account sees them; built once per account (each node's capacity-use dict is
        the snapshot's own, so what the router takes later shows through)."""
        cached = self._nodes_by_account.get(account_id)
        if cached is not None:
            return cached
        allowed = self.eligible.get(account_id, set())
        out = []
        for node in self.nodes.values():
            used = self.capacity_used.setdefault(node.location_id, {})
            out.append(
                RouteNode(
                    **{
                        **node.__dict__,
                        "eligible": node.location_id in allowed,
                        "capacity_used": used,
                    }
                )
            )
        self._nodes_by_account[account_id] = out
        return out

    def take(self, location_id: int, sku_id: int, units: int) -> None:
        self.atp[(location_id, sku_id)] = self.atp.get((location_id, sku_id), 0) - units

    def use_capacity(self, location_id: int, day: date, shipments: int = 1) -> None:
        days = self.capacity_used.setdefault(location_id, {})
        days[day] = days.get(day, 0) + shipments

    def take_plan(self, plan: RoutingPlan, sign: int = 1) -> None:
        """Count a plan's shipments and units against the snapshot (sign -1 gives them back)."""
        for shipment in plan.shipments:
            self.use_capacity(shipment.location_id, shipment.ship_day, sign)
            for line in shipment.lines:
                self.take(shipment.location_id, line.sku_id, sign * line.quantity)


def network_snapshot(*, sku_ids: list[int], now: datetime | None = None) -> NetworkSnapshot:
    """Active nodes, account eligibility, capacity used around today, ATP of ``sku_ids`` and the rules."""
    now = now or timezone.now()
    config = routing_config_active()  # 1 query
    rules = route_rules(config)  # 1 query
    EligibleThrough = Location.channel_accounts.through
    nodes: dict[int, RouteNode] = {}
    for loc in Location.objects.filter(is_active=True).order_by("pk"):  # 1 query
        nodes[loc.pk] = RouteNode(
            location_id=loc.pk,
            code=loc.code,
            kind=loc.kind,
            is_active=loc.is_active,
            can_ship=loc.can_ship,
            can_pickup=loc.can_pickup,
            ships_from_store=loc.ships_from_store,
            timezone=loc.timezone or "UTC",
            cutoff=loc.cutoff_time,
            ship_days=frozenset(loc.ship_days),
            closed_on=frozenset(loc.closed_on),
            daily_capacity=loc.daily_capacity,
            cost=loc.cost_per_shipment,
            priority=loc.priority,
            point=point_of(loc.latitude, loc.longitude, loc.country_code, loc.postal_code),
        )
    eligible: dict[int, set[int]] = defaultdict(set)
    for account_id, location_id in EligibleThrough.objects.filter(location__is_active=True).values_list(
        "channelaccount_id", "location_id"
    ):  # 1 query
        eligible[account_id].add(location_id)
    today = now.date()
    capacity_used: dict[int, dict[date, int]] = defaultdict(dict)
    for location_id, day, used in NodeCapacityDay.objects.filter(
        day__gte=today - timedelta(days=1), day__lte=today + timedelta(days=MAX_CLOSED_DAYS + 2)
    ).values_list("location_id", "day", "capacity_used"):  # 1 query
        capacity_used[location_id][day] = used
    return NetworkSnapshot(
        nodes=nodes,
        eligible=dict(eligible),
        capacity_used=dict(capacity_used),
        atp=atp_for(sku_ids=sku_ids, location_ids=list(nodes)),  # 1 query
        rules=rules,
        config=config,
        loaded_at=now,
        atp_skus=set(sku_ids),
    )


def atp_for(*, sku_ids: list[int], location_ids: list[int]) -> dict[tuple[int, int], int]:
    """{(location_id, sku_id): available to promise} in one query."""
    if not sku_ids or not location_ids:
        return {}
    rows = StockLevel.objects.filter(sku_id__in=list(sku_ids), location_id__in=list(location_ids)).values_list(
        "location_id", "sku_id", "on_hand", "reserved", "safety_stock"
    )
    return {(loc, sku): max(on_hand - reserved - safety, 0) for loc, sku, on_hand, reserved, safety in rows}


@dataclass
class OrderToRoute:
    route: RouteOrder
    status: str
    on_hold: bool
    marketplace_fulfilled: bool
    external_id: str
    ship_by: datetime | None
    deliver_by: datetime | None
    shipping_method: str
    lines: dict[int, dict]  # line_id -> {need, sku_id, sku_code, allow_backorder, is_preorder, status}
    has_routing_case: bool = False
    # A store pickup needs no address; anything shipped needs a usable ship-to (orders' ship_to_usable).
    ship_to_usable: bool = True


def orders_to_route(order_ids: list[int]) -> dict[int, OrderToRoute]:
    """Orders with their routable lines and each line's open need, in one query for any number of orders.

    need = ordered - cancelled - shipped - units held by active reservations.
    """
    if not order_ids:
        return {}
    # The status is a FILTER of the sum, not a WHERE: with status in the WHERE, a planner without statistics
    # (tables grown from empty, autovacuum not yet run) bitmap-ANDs the whole partial index of active
    # reservations into every line's lookup; here only the order-line index can serve.
    reserved = (
        Reservation.objects.filter(order_line=OuterRef("pk"))
        .values("order_line")
        .annotate(total=Sum("quantity", filter=Q(status=ReservationStatus.ACTIVE)))
        .values("total")
    )
    rows = (
        OrderLine.objects.filter(order_id__in=list(order_ids))
        .annotate(
            active_reserved=Coalesce(Subquery(reserved, output_field=IntegerField()), Value(0)),
            has_routing_case=Exists(
                ExceptionCase.objects.filter(
                    order=OuterRef("order_id"),
                    kind__in=ROUTING_EXCEPTION_KINDS,
                    status__in=[CaseStatus.OPEN, CaseStatus.ACKNOWLEDGED],
                )
            ),
            # The account's kind in the same statement (the order holds its account by id: config.kernel.accounts).
            order_account_kind=accounts.account_value("kind", outer="order__account_id"),
        )
        .values(
            "has_routing_case",
            "order_account_kind",
            "pk",
            "order_id",
            "sku_id",
            "sku__code",
            "sku__allow_backorder",
            "sku__is_preorder",
            "is_backorder_allowed",
            "status",
            "quantity",
            "quantity_cancelled",
            "quantity_shipped",
            "active_reserved",
            "order__status",
            "order__on_hold",
            "order__marketplace_fulfilled",
            "order__external_id",
            "order__account_id",
            "order__service_level",
            "order__pickup_location_id",
            "order__pickup_location_ref",
            "order__ship_by",
            "order__deliver_by",
            "order__shipping_method",
            "order__ship_to__latitude",
            "order__ship_to__longitude",
            "order__ship_to__country_code",
            "order__ship_to__postal_code",
            "order__ship_to__line1",
            "order__ship_to__city",
        )
        .order_by("order_id", "pk")
    )
    grouped: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[row["order_id"]].append(row)
    out = {}
    for order_id, lines in grouped.items():
        head = lines[0]
        info = {}
        route_lines = []
        for row in lines:
            need = row["quantity"] - row["quantity_cancelled"] - row["quantity_shipped"] - row["active_reserved"]
            info[row["pk"]] = {
                "need": max(need, 0),
                "sku_id": row["sku_id"],
                "sku_code": row["sku__code"] or "",
                "allow_backorder": bool(row["is_backorder_allowed"] or row["sku__allow_backorder"]),
                "is_preorder": bool(row["sku__is_preorder"]),
                "status": row["status"],
            }
            if row["sku_id"] and need > 0 and row["status"] in ROUTABLE_LINE_STATUSES:
                route_lines.append(RouteLine(row["pk"], row["sku_id"], row["sku__code"], need))
        out[order_id] = OrderToRoute(
            route=RouteOrder(
                order_id=order_id,
                account_id=head["order__account_id"],
                channel_kind=head["order_account_kind"],
                service_level=head["order__service_level"],
                pickup_location_id=head["order__pickup_location_id"],
                pickup_location_ref=head["order__pickup_location_ref"],
                ship_by=head["order__ship_by"],
                ship_to=point_of(
                    head["order__ship_to__latitude"],
                    head["order__ship_to__longitude"],
                    head["order__ship_to__country_code"] or "",
                    head["order__ship_to__postal_code"] or "",
                ),
                lines=tuple(route_lines),
            ),
            status=head["order__status"],
            on_hold=head["order__on_hold"],
            marketplace_fulfilled=head["order__marketplace_fulfilled"],
            external_id=head["order__external_id"],
            ship_by=head["order__ship_by"],
            deliver_by=head["order__deliver_by"],
            shipping_method=head["order__shipping_method"],
            lines=info,
            has_routing_case=head["has_routing_case"],
            ship_to_usable=head["order__service_level"] == "pickup"
            or ship_to_usable(
                line1=head["order__ship_to__line1"],
                city=head["order__ship_to__city"],
                country_code=head["order__ship_to__country_code"],
                postal_code=head["order__ship_to__postal_code"],
            ),
        )
    return out


def unreleased_reservations(order_id: int) -> list[Reservation]:
    """Active reservations of the order that no shipment carries yet (e.g. a backorder filled on receipt)."""
    return list(
        Reservation.objects.filter(
            order_line__order_id=order_id, status=ReservationStatus.ACTIVE, shipment_lines__isnull=True
        ).order_by("pk")
    )


def _routing_case_open():
    return ExceptionCase.objects.filter(
        order=OuterRef("pk"), kind__in=ROUTING_EXCEPTION_KINDS, status__in=[CaseStatus.OPEN, CaseStatus.ACKNOWLEDGED]
    )


def _seller_fulfilled() -> QuerySet[Order]:
    return Order.objects.filter(on_hold=False, marketplace_fulfilled=False)


def releasable_order_ids(*, limit: int) -> list[int]:
    """Open, seller-fulfilled, not held, no open routing exception: earliest ship-by first."""
    return list(
        _seller_fulfilled()
        .filter(status=OrderStatus.OPEN)
        .exclude(Exists(_routing_case_open()))
        .order_by(F("ship_by").asc(nulls_last=True), "placed_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def retry_order_ids(*, limit: int) -> list[int]:
    """Orders worth another routing attempt: open routing exceptions, backorders, lines short after a pick,
    and reservations filled later (a received backorder) that no shipment carries yet."""
    waiting_line = OrderLine.objects.filter(
        order=OuterRef("pk"), sku__isnull=False, status__in=[LineStatus.OPEN, LineStatus.BACKORDERED]
    )
    unreleased = Reservation.objects.filter(
        order_line__order=OuterRef("pk"), status=ReservationStatus.ACTIVE, shipment_lines__isnull=True
    )
    return list(
        _seller_fulfilled()
        .filter(
            status__in=[
                OrderStatus.OPEN,
                OrderStatus.BACKORDERED,
                OrderStatus.ALLOCATED,
                OrderStatus.RELEASED,
                OrderStatus.PARTIALLY_SHIPPED,
            ]
        )
        .filter(
            Q(status=OrderStatus.OPEN, pk__in=Subquery(_routing_case_open().values("order_id")))
            | (~Q(status=OrderStatus.OPEN) & Exists(waiting_line))
            | Exists(unreleased)
        )
        .order_by(F("ship_by").asc(nulls_last=True), "pk")
        .values_list("pk", flat=True)[:limit]
    )


# --- shipments -------------------------------------------------------------------------------------------


def shipment_list() -> QuerySet[Shipment]:
    return Shipment.objects.select_related("order", "location", "carrier").order_by("-id")


def shipments_for_node(*, location_id: int, statuses: list[str] | None = None) -> QuerySet[Shipment]:
    """A node's shipments with their lines (the WMS queue): released first."""
    qs = Shipment.objects.filter(location_id=location_id).select_related("order", "location", "carrier")
    if statuses:
        qs = qs.filter(status__in=statuses)
    return qs.prefetch_related(
        Prefetch("lines", queryset=ShipmentLine.objects.select_related("order_line__sku").order_by("pk"))
    ).order_by("pk")


def shipment_detail() -> QuerySet[Shipment]:
    lines = ShipmentLine.objects.select_related("order_line__sku", "reservation").order_by("pk")
    return Shipment.objects.select_related("order__ship_to", "location", "carrier", "decision").prefetch_related(
        "order__account",
        Prefetch("lines", queryset=lines),
        Prefetch("tracking_events", queryset=TrackingEvent.objects.order_by("-occurred_at", "-pk")),
    )


@dataclass
class BoardColumn:
    status: str
    label: str
    shipments: list[Shipment]


def node_board(*, location: Location, now: datetime | None = None, per_column: int = 50) -> dict:
    """The fulfilment board for one node: released / picking / packed / late, and capacity used today."""
    now = now or timezone.now()
    active = Shipment.objects.filter(location=location, status__in=PRE_SHIP).select_related("order")
    counts = dict(
        Shipment.objects.filter(location=location, status__in=HOLDS_STOCK)
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    columns = []
    for status, label in (
        ((ShipmentStatus.RELEASED, ShipmentStatus.ACKNOWLEDGED), "Released"),
        ((ShipmentStatus.PICKING,), "Picking"),
        ((ShipmentStatus.PACKED,), "Packed"),
        ((ShipmentStatus.READY_FOR_PICKUP,), "Ready for pickup"),
    ):
        rows = list(
            Shipment.objects.filter(location=location, status__in=status)
            .select_related("order")
            .order_by(F("ship_by").asc(nulls_last=True), "pk")[:per_column]
        )
        # --- scorecards: releasable picks whose lateness costs the most metric points first ---
        if ShipmentStatus.RELEASED in status:
            points = order_priorities(s.order_id for s in rows)
            for shipment in rows:
                shipment.scorecard_points = points.get(shipment.order_id, 0.0)
            rows.sort(key=lambda s: -s.scorecard_points)  # stable: ship-by order within equal points
        columns.append(BoardColumn(status=status[0], label=label, shipments=rows))
    late = list(active.filter(ship_by__lt=now).order_by("ship_by", "pk")[:per_column])
    local_today = now.astimezone(ZoneInfo(location.timezone or "UTC")).date()
    capacity = NodeCapacityDay.objects.filter(location=location, day=local_today)
    used = capacity.values_list("capacity_used", flat=True).first() or 0
    return {
        "columns": columns,
        "late": late,
        "late_count": active.filter(ship_by__lt=now).count(),
        "counts": counts,
        "capacity_day": local_today,
        "capacity_used": used,
        "capacity": location.daily_capacity,
    }


def recent_decisions(order_id: int) -> QuerySet[RoutingDecision]:
    return RoutingDecision.objects.filter(order_id=order_id).order_by("-created_at", "-pk")


def accounts_shipping_from(location_id: int) -> list[int]:
    """The channel accounts that may ship from this node (their eligible locations include it)."""
    through = Location.channel_accounts.through
    return sorted(through.objects.filter(location_id=location_id).values_list("channelaccount_id", flat=True))


def carrier_performance(*, days: int = 30, now: datetime | None = None) -> list[dict]:
    """On-time delivery by carrier and service level over the last ``days``: delivered parcels, those
    delivered by their promise, and the rate (for the dashboard's chart)."""
    now = now or timezone.now()
    rows = list(
        Shipment.objects.filter(delivered_at__gte=now - timedelta(days=days), carrier__isnull=False)
        .values("carrier__code", "carrier__name", "service_level")
        .annotate(
            delivered=Count("id"),
            on_time=Count(
                "id", filter=Q(promised_delivery_at__isnull=True) | Q(delivered_at__lte=F("promised_delivery_at"))
            ),
        )
        .order_by("carrier__code", "service_level")
    )
    in_flight = dict(
        Shipment.objects.filter(status__in=list(IN_FLIGHT), carrier__isnull=False)
        .values("carrier__code")
        .annotate(n=Count("id"))
        .values_list("carrier__code", "n")
    )
    for row in rows:
        row["rate"] = round(100 * row["on_time"] / row["delivered"], 1) if row["delivered"] else None
        row["in_flight"] = in_flight.get(row["carrier__code"], 0)
    return rows


def shipment_queue() -> QuerySet[Shipment]:
    return Shipment.objects.select_related("order", "location", "carrier").only(
        "id",
        "status",
        "kind",
        "tracking_number",
        "service_level",
        "ship_by",
        "shipped_at",
        "promised_delivery_at",
        "delivered_at",
        "order__id",
        "order__external_id",
        "order__external_reference",
        "location__id",
        "location__code",
        "carrier__id",
        "carrier__code",
    )
