"""What channels hears from the apps it builds on, which never import channels.

fulfillment and orders send their signals inside the transaction that ships or cancels; these receivers
only write OutboxMessage rows, so a confirmation is queued if and only if the shipment commits, and the
relay pushes it after commit. inventory announces stock changes after commit (stock_changed): the
advertised quantities of those SKUs are recomputed (debounced), and the push planner sends what moved.
"""

from __future__ import annotations

from datetime import datetime

from django.dispatch import receiver

from channels.connectors import connector_class
from channels.outbox import cancellation_enqueue, pickup_ready_enqueue, ship_confirmation_enqueue
from channels.tasks import channel_availability_schedule
from fulfillment.signals import pickup_ready, ship_confirmation_resend, shipment_line_cancelled, shipment_shipped
from inventory.signals import stock_changed
from orders.models import CancelInitiator, Order, OrderEvent, OrderLine
from orders.signals import order_lines_cancelled

# Ship-confirmation carrier for a store pickup: channels that take a pickup confirmation accept "Other".
PICKUP_CARRIER = "Other"


def _channel_order(order_id: int) -> Order | None:
    order = Order.objects.get(pk=order_id)
    # Marketplace-fulfilled orders are the marketplace's to confirm; an exchange's replacement order
    # (replaces_order) was made by Waybill and is unknown to the channel.
    return None if order.marketplace_fulfilled or order.replaces_order_id else order


def _whole_order_buyer_cancel(order: Order, initiator: str, reason: str) -> bool:
    """A buyer's accepted cancel request on a channel that cancels whole orders only (eBay): every line
    cancelled in the accepting transaction goes into one cancellation of all open lines (queued once),
    which the channel applies by approving the buyer's request, instead of one refused message per line."""
    if initiator != CancelInitiator.BUYER or not connector_class(order.account.kind).cancels_whole_orders_only:
        return False
    cancellation_enqueue(order=order, lines=[], reason=_reason_code(reason), dedupe_key="buyer-request")
    return True


@receiver(shipment_shipped, dispatch_uid="channels.ship_confirmation")
def queue_ship_confirmation(sender, *, shipment_id: int, order_id: int, event_id: int, **kwargs) -> None:
    order = _channel_order(order_id)
    if order is None:
        return
    data = OrderEvent.objects.values_list("data", flat=True).get(pk=event_id)
    lines = [(line["external_id"], line["quantity"]) for line in data.get("lines", []) if line["quantity"] > 0]
    if not lines:
        return
    if data.get("kind") == "pickup":
        ship_confirmation_enqueue(
            order=order,
            package_reference=f"shipment-{shipment_id}",
            carrier_code=PICKUP_CARRIER,
            carrier_name="Store pickup",
            tracking_number=f"PICKUP-{shipment_id}",
            shipped_at=datetime.fromisoformat(data["picked_up_at"]),
            lines=lines,
        )
        return
    codes = data.get("channel_carrier_codes") or {}
    ship_confirmation_enqueue(
        order=order,
        package_reference=f"shipment-{shipment_id}",
        carrier_code=codes.get(order.account.kind, data["carrier"]),
        carrier_name=data.get("carrier_name", ""),
        tracking_number=data["tracking_number"],
        tracking_url=data.get("tracking_url", ""),
        shipping_method=data.get("service_level", ""),
        shipped_at=datetime.fromisoformat(data["shipped_at"]),
        lines=lines,
    )


@receiver(ship_confirmation_resend, dispatch_uid="channels.ship_confirmation_resend")
def queue_ship_confirmation_again(sender, *, shipment_id: int, order_id: int, event_id: int, **kwargs) -> None:
    """A person asked for a shipment's confirmation to be sent again: a new message with the original
    details (the event's data is the "shipped" event's)."""
    order = _channel_order(order_id)
    if order is None:
        return
    data = OrderEvent.objects.values_list("data", flat=True).get(pk=event_id)
    lines = [(line["external_id"], line["quantity"]) for line in data.get("lines", []) if line["quantity"] > 0]
    if not lines:
        return
    pickup = data.get("kind") == "pickup"
    codes = data.get("channel_carrier_codes") or {}
    ship_confirmation_enqueue(
        order=order,
        package_reference=f"shipment-{shipment_id}",
        carrier_code=PICKUP_CARRIER if pickup else codes.get(order.account.kind, data["carrier"]),
        carrier_name="Store pickup" if pickup else data.get("carrier_name", ""),
        tracking_number=f"PICKUP-{shipment_id}" if pickup else data["tracking_number"],
        tracking_url="" if pickup else data.get("tracking_url", ""),
        shipping_method="" if pickup else data.get("service_level", ""),
        shipped_at=datetime.fromisoformat(data["picked_up_at"] if pickup else data["shipped_at"]),
        lines=lines,
        resend=str(event_id),
    )


@receiver(shipment_line_cancelled, dispatch_uid="channels.line_cancellation")
def queue_line_cancellation(
    sender, *, shipment_id: int, order_id: int, order_line_id: int, quantity: int, reason: str, event_id: int, **kwargs
) -> None:
    actor, data = OrderEvent.objects.values_list("actor", "data").get(pk=event_id)
    if actor.startswith("sync:"):
        # The channel cancelled it and the sync applied it: telling the channel again would double it.
        return
    order = _channel_order(order_id)
    if order is None or _whole_order_buyer_cancel(order, (data or {}).get("initiator", ""), reason):
        return
    # Read in the cancelling transaction: the line already counts these units cancelled.
    external_line_id, ordered, cancelled = OrderLine.objects.values_list(
        "external_id", "quantity", "quantity_cancelled"
    ).get(pk=order_line_id)
    cancellation_enqueue(
        order=order,
        lines=[(external_line_id, quantity)],
        reason=_reason_code(reason),
        dedupe_key=f"line:{order_line_id}:event:{event_id}",
        keep={external_line_id: max(ordered - cancelled, 0)},
    )


@receiver(order_lines_cancelled, dispatch_uid="channels.order_lines_cancellation")
def queue_order_lines_cancellation(
    sender, *, order_id: int, lines: list[tuple[int, int]], reason: str, event_id: int, initiator: str = "", **kwargs
) -> None:
    """Units Waybill cancelled before routing them (e.g. a buyer's cancel request accepted): one cancellation
    for the lines, as a shipment line cancel queues it."""
    actor = OrderEvent.objects.values_list("actor", flat=True).get(pk=event_id)
    if actor.startswith("sync:"):
        return  # the channel's own cancellation, applied by the sync
    order = _channel_order(order_id)
    if order is None or _whole_order_buyer_cancel(order, initiator, reason):
        return
    rows = {
        pk: (external_id, ordered, cancelled)
        for pk, external_id, ordered, cancelled in OrderLine.objects.filter(
            pk__in=[line_id for line_id, _ in lines]
        ).values_list("pk", "external_id", "quantity", "quantity_cancelled")
    }
    cancellation_enqueue(
        order=order,
        lines=[(rows[line_id][0], quantity) for line_id, quantity in lines],
        reason=_reason_code(reason),
        dedupe_key=f"order-lines:event:{event_id}",
        keep={rows[line_id][0]: max(rows[line_id][1] - rows[line_id][2], 0) for line_id, _ in lines},
    )


@receiver(pickup_ready, dispatch_uid="channels.pickup_ready")
def queue_pickup_ready(sender, *, shipment_id: int, order_id: int, **kwargs) -> None:
    order = _channel_order(order_id)
    if order is not None and connector_class(order.account.kind).supports_pickup_ready:
        pickup_ready_enqueue(order=order, shipment_id=shipment_id)


@receiver(stock_changed, dispatch_uid="channels.availability_recompute")
def recompute_availability(sender, *, sku_ids: list[int], **kwargs) -> None:
    channel_availability_schedule(sku_ids=sku_ids)


def _reason_code(reason: str) -> str:
    """The channel-neutral reason code (Amazon's vocabulary; each connector maps it to its own)."""
    text = reason.lower()
    if "pickup expired" in text or "buyer" in text or "customer" in text:
        return "BuyerCanceled"
    if "address" in text:
        return "ShippingAddressUndeliverable"
    if "stock" in text or "inventory" in text or "short" in text:
        return "NoInventory"
    return "GeneralAdjustment"
