"""Manual reroute: a person cancels the order's unshipped shipments and routes it again, optionally to one
forced node."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from django.db import transaction

from config.kernel.actors import Actor, actor_resolve
from fulfillment.errors import InvalidInput, RerouteRefused
from fulfillment.models import RoutingDecision, Shipment, ShipmentLine, ShipmentStatus
from fulfillment.selectors import network_snapshot, orders_to_route
from fulfillment.services.common import capacity_give_back
from fulfillment.services.route.common import ROUTABLE_ORDER_STATUSES, RouteResult, advisory_lock, order_ref
from fulfillment.services.route.general import order_route_in_transaction
from fulfillment.status import PRE_SHIP
from inventory.services import stock_release
from orders import services as order_services
from orders.models import ExceptionKind

# The cases a reroute that routes the whole order settles.
REROUTE_SETTLES = (
    ExceptionKind.NO_NODE,
    ExceptionKind.INSUFFICIENT_STOCK,
    ExceptionKind.OVER_CAPACITY,
    ExceptionKind.SHIP_BY_UNREACHABLE,
    ExceptionKind.SHORT_PICK,
    ExceptionKind.SHIP_BY_AT_RISK,
)


def order_reroute(
    *,
    order_id: int,
    reason: str,
    actor: Actor,
    location_id: int | None = None,
    now: datetime | None = None,
    durable: bool = True,
) -> RouteResult:
    """Manual reroute: cancel the order's unshipped shipments (their reservations released), then route
    again, optionally forced to one node. One OrderEvent "rerouted" records actor, reason, before, after.
    A reroute that routes the whole order settles its routing exception cases (no node, short pick…).

    A forced node that cannot ship every line refuses the reroute and changes nothing. ``durable=False``
    lets a caller run it inside its own transaction (a bulk reroute's per-order savepoint, a backorder).
    """
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "a reroute needs a reason")
    with transaction.atomic(durable=durable):
        advisory_lock(order_id)
        fresh = orders_to_route([order_id]).get(order_id)
        if fresh is None:
            raise InvalidInput("order", f"order {order_id} does not exist or has no lines")
        if fresh.marketplace_fulfilled:
            raise RerouteRefused(f"order {fresh.external_id} is fulfilled by the marketplace: never routed")
        if fresh.status not in ROUTABLE_ORDER_STATUSES:
            raise RerouteRefused(f"order {fresh.external_id} is {fresh.status}: nothing to reroute")
        if not fresh.ship_to_usable:
            raise RerouteRefused(f"order {fresh.external_id} has no usable ship-to address: it cannot be routed")
        shipments = list(
            Shipment.objects.select_for_update()
            .filter(order_id=order_id, status__in=PRE_SHIP)
            .select_related("location")
            .order_by("pk")
        )
        before = [_shipment_summary(s) for s in shipments]
        reservation_ids = list(
            ShipmentLine.objects.filter(shipment__in=shipments, reservation__isnull=False).values_list(
                "reservation_id", flat=True
            )
        )
        if reservation_ids:
            stock_release(reservation_ids=reservation_ids, actor=actor)
        line_ids = set()
        for s in shipments:
            s.status = ShipmentStatus.CANCELLED
            s.save(update_fields=["status", "updated_at"])
            capacity_give_back(location_id=s.location_id, day=s.capacity_day)
            line_ids |= {line.order_line_id for line in s.lines.all()}
        order_services.order_lines_reopen_unreserved(line_ids=line_ids, actor=actor)
        network = network_snapshot(
            sku_ids=sorted({line["sku_id"] for line in fresh.lines.values() if line["sku_id"]}), now=now
        )
        if location_id is not None:
            if location_id not in network.nodes:
                raise InvalidInput("location", f"location {location_id} is not an active node")
            network.rules = replace(network.rules, forced_location=location_id)
        result = order_route_in_transaction(
            order_id=order_id, network=network, actor=actor, now=now, locked=True, strategy="manual-reroute"
        )
        if location_id is not None and (result.backordered_line_ids or result.exception_case_ids):
            # Raised inside the transaction: the cancelled shipments and released stock roll back.
            node = network.nodes[location_id].code
            explanation = RoutingDecision.objects.values_list("explanation", flat=True).get(pk=result.decision_id)
            raise RerouteRefused(f"{node} cannot ship the whole order: {explanation}")
        after = [
            _shipment_summary(s)
            for s in Shipment.objects.filter(pk__in=result.shipment_ids).select_related("location").order_by("pk")
        ]
        order_services.order_event_record(
            order=order_ref(order_id),
            kind="rerouted",
            actor=actor,
            reason=reason.strip(),
            data={
                "before": before,
                "after": after,
                "forced_location": network.nodes[location_id].code if location_id else None,
                "decision_id": result.decision_id,
            },
        )
        if not result.backordered_line_ids and not result.exception_case_ids:
            order_services.exception_cases_settle(
                order_id=order_id, kinds=REROUTE_SETTLES, note=f"rerouted: {reason.strip()}", actor=actor
            )
    return result


def _shipment_summary(shipment: Shipment) -> dict:
    return {
        "shipment_id": shipment.pk,
        "node": shipment.location.code,
        "status": shipment.status,
        "lines": [{"order_line": line.order_line_id, "quantity": line.quantity} for line in shipment.lines.all()],
    }
