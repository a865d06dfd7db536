"""Fulfillment: carriers, order-routing decisions, shipments released to nodes, tracking events
and node capacity.

Models hold data and small properties; every write goes through fulfillment/services.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q


class Carrier(models.Model):
    code = models.CharField(max_length=32, unique=True, help_text='Our code, e.g. "UPS"')
    name = models.CharField(max_length=128)
    tracking_url_template = models.URLField(
        max_length=500, blank=True, help_text="e.g. https://www.ups.com/track?tracknum={tracking_number}"
    )
    is_active = models.BooleanField(default=True)
    # Channel kind -> that channel's carrier code: {"amazon": "UPS", "tiktok": "7117858858072016686"}.
    channel_codes = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.code

    def tracking_url(self, number: str) -> str:
        if not self.tracking_url_template or not number:
            return ""
        return self.tracking_url_template.format(tracking_number=number)

    def code_for_channel(self, channel_kind: str) -> str:
        return self.channel_codes.get(channel_kind, self.code)


class RoutingOutcome(models.TextChoices):
    ROUTED = "routed", "Routed"
    SPLIT = "split", "Split across nodes"
    BACKORDERED = "backordered", "Backordered"
    NO_NODE = "no_node", "No node"
    EXCEPTION = "exception", "Exception"


class RoutingDecision(models.Model):
    """Append-only: why an order went to the node(s) it went to."""

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="routing_decisions")
    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=150)
    strategy = models.CharField(max_length=64, blank=True)
    config_version = models.CharField(max_length=64, blank=True, help_text="Version of the routing rules used")
    # {node code: [{"order_line": id, "quantity": n}, …]}
    plan = models.JSONField(default=dict, blank=True)
    # Every candidate node with its score components and why it lost.
    candidates = models.JSONField(default=list, blank=True)
    outcome = models.CharField(max_length=16, choices=RoutingOutcome.choices)
    explanation = models.TextField(blank=True)
    duration_ms = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["order", "created_at"], name="routingdecision_order_time")]
        constraints = [models.CheckConstraint(condition=~Q(actor=""), name="routingdecision_actor_required")]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} for order {self.order_id}"


class ShipmentStatus(models.TextChoices):
    RELEASED = "released", "Released"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    PICKING = "picking", "Picking"
    PACKED = "packed", "Packed"
    SHIPPED = "shipped", "Shipped"
    IN_TRANSIT = "in_transit", "In transit"
    OUT_FOR_DELIVERY = "out_for_delivery", "Out for delivery"
    DELIVERED = "delivered", "Delivered"
    EXCEPTION = "exception", "Exception"
    CANCELLED = "cancelled", "Cancelled"
    # Pickup (BOPIS)
    READY_FOR_PICKUP = "ready_for_pickup", "Ready for pickup"
    PICKED_UP = "picked_up", "Picked up"
    PICKUP_EXPIRED = "pickup_expired", "Pickup expired"


class ShipmentKind(models.TextChoices):
    SHIP = "ship", "Ship"
    PICKUP = "pickup", "Store pickup"
    SHIP_FROM_STORE = "ship_from_store", "Ship from store"


class Shipment(models.Model):
    """One package (or pickup) released to one node."""

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="shipments")
    location = models.ForeignKey("inventory.Location", on_delete=models.PROTECT, related_name="shipments")
    status = models.CharField(max_length=32, choices=ShipmentStatus.choices, default=ShipmentStatus.RELEASED)
    kind = models.CharField(max_length=16, choices=ShipmentKind.choices, default=ShipmentKind.SHIP)
    carrier = models.ForeignKey(Carrier, null=True, blank=True, on_delete=models.PROTECT, related_name="shipments")
    service_level = models.CharField(max_length=64, blank=True)
    tracking_number = models.CharField(max_length=128, blank=True)
    tracking_url = models.URLField(max_length=500, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True, help_text="Ship time as the node reports it")
    promised_delivery_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    pickup_deadline = models.DateTimeField(null=True, blank=True)
    last_scan_at = models.DateTimeField(null=True, blank=True)
    external_reference = models.CharField(max_length=128, blank=True, help_text="The WMS's id")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["location", "status"], name="shipment_location_status"),
            models.Index(fields=["status", "shipped_at"], name="shipment_status_shipped"),
            models.Index(fields=["tracking_number"], name="shipment_tracking_number"),
        ]

    def __str__(self) -> str:
        return f"Shipment {self.pk} ({self.status})"


class ShipmentLine(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="lines")
    order_line = models.ForeignKey("orders.OrderLine", on_delete=models.PROTECT, related_name="shipment_lines")
    reservation = models.ForeignKey(
        "inventory.Reservation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="shipment_lines",
    )
    quantity = models.PositiveIntegerField()
    quantity_shipped = models.PositiveIntegerField(default=0)
    quantity_short = models.PositiveIntegerField(default=0, help_text="Short-picked at the node")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="shipmentline_quantity_positive"),
            models.CheckConstraint(
                condition=Q(quantity_shipped__lte=F("quantity")), name="shipmentline_shipped_le_quantity"
            ),
            models.CheckConstraint(
                condition=Q(quantity_short__lte=F("quantity") - F("quantity_shipped")),
                name="shipmentline_shipped_plus_short_le_quantity",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_line_id} x{self.quantity}"


class TrackingStatus(models.TextChoices):
    LABEL_CREATED = "label_created", "Label created"
    IN_TRANSIT = "in_transit", "In transit"
    OUT_FOR_DELIVERY = "out_for_delivery", "Out for delivery"
    DELIVERED = "delivered", "Delivered"
    DELAYED = "delayed", "Delayed"
    EXCEPTION = "exception", "Exception"
    RETURNED_TO_SENDER = "returned_to_sender", "Returned to sender"


class TrackingEvent(models.Model):
    """Append-only carrier scans; a replayed feed changes nothing (unique dedupe key per shipment)."""

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="tracking_events")
    carrier = models.ForeignKey(Carrier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=32, choices=TrackingStatus.choices)
    description = models.CharField(max_length=500, blank=True)
    location_text = models.CharField(max_length=255, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=64, help_text='"tms", "carrier:ups", …')
    dedupe_key = models.CharField(max_length=255)
    raw = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["shipment", "dedupe_key"], name="trackingevent_unique_dedupe_key"),
        ]
        indexes = [models.Index(fields=["shipment", "occurred_at"], name="trackingevent_shipment_time")]

    def __str__(self) -> str:
        return f"{self.get_status_display()} at {self.occurred_at}"


class NodeCapacityDay(models.Model):
    """Shipments released to a node on one local day; capacity left = Location.daily_capacity - used."""

    location = models.ForeignKey("inventory.Location", on_delete=models.CASCADE, related_name="capacity_days")
    day = models.DateField()
    capacity_used = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["location", "day"], name="nodecapacityday_unique_location_day"),
        ]

    def __str__(self) -> str:
        return f"{self.location_id} {self.day}: {self.capacity_used}"
