"""Inventory reads: querysets with their joins and figures done, for the console and the API."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, Count, F, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from config.kernel.trends import daily_found_healed
from inventory.models import (
    CountProposalStatus,
    InboundLine,
    InboundShipment,
    InboundStatus,
    Location,
    Reservation,
    ReservationStatus,
    Sku,
    StockCountProposal,
    StockLevel,
    StockMovement,
    StockSnapshot,
)

OPEN_INBOUND = (InboundStatus.OPEN, InboundStatus.PARTIALLY_RECEIVED)


def _inbound_outstanding() -> Subquery:
    per_row = (
        InboundLine.objects.filter(
            sku_id=OuterRef("sku_id"),
            shipment__location_id=OuterRef("location_id"),
            shipment__status__in=OPEN_INBOUND,
            quantity_received__lt=F("quantity_expected"),
        )
        .values("sku_id")
        .annotate(total=Sum(F("quantity_expected") - F("quantity_received")))
        .values("total")
    )
    return Subquery(per_row, output_field=IntegerField())


def atp_by_sku_location(*, sku_ids: Iterable[int], location_ids: Iterable[int]) -> dict[tuple[int, int], int]:
    """{(sku_id, location_id): available to promise} at the ACTIVE locations among ``location_ids``, in one
    query. Available to promise is on hand - reserved - safety stock, never below zero; pairs with no
    stock row are absent (nothing to promise)."""
    sku_ids, location_ids = sorted(set(sku_ids)), sorted(set(location_ids))
    if not sku_ids or not location_ids:
        return {}
    rows = StockLevel.objects.filter(
        sku_id__in=sku_ids, location_id__in=location_ids, location__is_active=True
    ).values_list("sku_id", "location_id", "on_hand", "reserved", "safety_stock")
    return {(sku, loc): max(on_hand - reserved - safety, 0) for sku, loc, on_hand, reserved, safety in rows}


def stock_level_grid() -> QuerySet[StockLevel]:
    """SKU x location rows with on hand, reserved, ATP and inbound; one query per page."""
    return StockLevel.objects.select_related("sku", "location").annotate(
        atp_units=Greatest(F("on_hand") - F("reserved") - F("safety_stock"), Value(0)),
        inbound_units=Coalesce(_inbound_outstanding(), Value(0)),
    )


def sku_levels(sku: Sku) -> QuerySet[StockLevel]:
    return stock_level_grid().filter(sku=sku).order_by("location__priority", "location__code")


def sku_ledger(sku: Sku, *, limit: int = 200) -> QuerySet[StockMovement]:
    return StockMovement.objects.filter(sku=sku).select_related("location").order_by("-created_at", "-id")[:limit]


def sku_active_reservations(sku: Sku) -> QuerySet[Reservation]:
    return (
        Reservation.objects.filter(sku=sku, status=ReservationStatus.ACTIVE)
        .select_related("location", "order_line__order")
        .order_by("created_at", "id")
    )


def sku_inbound(sku: Sku) -> QuerySet[InboundLine]:
    return (
        InboundLine.objects.filter(sku=sku, shipment__status__in=OPEN_INBOUND)
        .select_related("shipment__location")
        .order_by("shipment__expected_at", "id")
    )


def inbound_list() -> QuerySet[InboundShipment]:
    return InboundShipment.objects.select_related("location").order_by("expected_at", "id")


def inbound_detail() -> QuerySet[InboundShipment]:
    return InboundShipment.objects.select_related("location").prefetch_related("lines__sku")


def movement_list() -> QuerySet[StockMovement]:
    return StockMovement.objects.select_related("sku", "location")


# --- reconciliation of nodes: count proposals -------------------------------------------------------


def node_count_overview() -> list[dict]:
    """Every node with its last snapshot time, counts that differed, and proposals waiting for a person."""
    stats = {
        row["location_id"]: row
        for row in StockCountProposal.objects.values("location_id").annotate(
            last=Max("created_at"),
            differed=Count("id"),
            waiting=Count("id", filter=Q(status=CountProposalStatus.PROPOSED)),
            auto=Count("id", filter=Q(status=CountProposalStatus.AUTO_APPLIED)),
        )
    }
    return [
        {"location": location, **stats.get(location.pk, {"last": None, "differed": 0, "waiting": 0, "auto": 0})}
        for location in Location.objects.order_by("code")
    ]


def node_count_proposals(*, location_id: int) -> QuerySet:
    """A node's count proposals, waiting ones first, newest first, with their SKU, snapshot, movement and case."""
    return (
        StockCountProposal.objects.filter(location_id=location_id)
        .select_related("sku", "snapshot", "movement", "case")
        .annotate(
            waiting_first=Case(
                When(status=CountProposalStatus.PROPOSED, then=0), default=1, output_field=IntegerField()
            )
        )
        .order_by("waiting_first", "-created_at", "-pk")
    )


@dataclass(frozen=True)
class NodeReconcilePage:
    last_snapshot: StockSnapshot | None
    last_rows: dict[str, int]
    by_kind: list[dict]
    trend: list[dict]
    waiting: list[StockCountProposal]


HEALED_COUNTS = (CountProposalStatus.AUTO_APPLIED, CountProposalStatus.APPLIED)


def node_reconcile_page(*, location: Location, days: int = 14, now: datetime | None = None) -> NodeReconcilePage:
    """A node's reconciliation: its last snapshot (rows at this node, how many differed, applied, proposed),
    the counts that differed within ``days`` by direction with how each was settled, found and healed per day
    (the trend), and the proposals waiting for a person."""
    now = now or timezone.now()
    since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    last = (
        StockSnapshot.objects.filter(result__contains={"rows": [{"location": location.code}]})
        .order_by("-created_at", "-pk")
        .first()
    )
    last_rows = {"rows": 0, "differed": 0, "applied": 0, "proposed": 0}
    if last is not None:
        for row in last.result.get("rows", []):
            if row.get("location") != location.code:
                continue
            last_rows["rows"] += 1
            if row.get("delta"):
                last_rows["differed"] += 1
                last_rows["proposed" if row.get("proposed") else "applied"] += 1
    window = StockCountProposal.objects.filter(location=location, created_at__gte=since)
    labels = {"below": "Counted fewer than on-hand", "above": "Counted more than on-hand"}
    by_kind = list(
        window.annotate(direction=Case(When(delta__lt=0, then=Value("below")), default=Value("above")))
        .values("direction")
        .annotate(
            found=Count("id"),
            auto=Count("id", filter=Q(status=CountProposalStatus.AUTO_APPLIED)),
            applied=Count("id", filter=Q(status=CountProposalStatus.APPLIED)),
            rejected=Count("id", filter=Q(status=CountProposalStatus.REJECTED)),
            waiting=Count("id", filter=Q(status=CountProposalStatus.PROPOSED)),
            units=Sum("delta"),
        )
        .order_by("direction")
    )
    for row in by_kind:
        row["label"] = labels[row["direction"]]
    trend = daily_found_healed(
        window, day_field="created_at", healed=Q(status__in=HEALED_COUNTS), since=since, days=days
    )
    waiting = list(
        StockCountProposal.objects.filter(location=location, status=CountProposalStatus.PROPOSED)
        .select_related("sku", "snapshot", "case")
        .order_by("-created_at", "-pk")[:200]
    )
    return NodeReconcilePage(last_snapshot=last, last_rows=last_rows, by_kind=by_kind, trend=trend, waiting=waiting)


# --- end of reconciliation ---------------------------------------------------------------------------
