"""Fulfillment: carriers, order-routing decisions, shipments released to nodes, tracking events
and node capacity.

Models hold data and small properties; every write goes through fulfillment/services.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce

from config.kernel.accounts import account_property
from orders.models import FAR_FUTURE

TIE_BREAKERS = ("on_time", "distance", "cost", "priority")


def default_tie_breakers() -> list[str]:
    return list(TIE_BREAKERS)


class RoutingConfig(models.Model):
    """The order-routing rules as data. Only the active row is used; each save bumps ``version`` and the
    next decision uses it (RoutingDecision.config_version records which version decided)."""

    name = models.CharField(max_length=64, unique=True, default="default")
    is_active = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    max_shipments = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1)], help_text="Never split an order into more shipments"
    )
    allow_line_split = models.BooleanField(default=True, help_text="One line's units may come from two nodes")
    ship_partial = models.BooleanField(
        default=True, help_text="Release the lines that can ship; backorder or raise an exception for the rest"
    )
    allow_late = models.BooleanField(
        default=False,
        help_text="When no node can meet the ship-by, route to the earliest instead of opening an exception",
    )
    tie_breakers = models.JSONField(
        default=default_tie_breakers,
        help_text=f"After fewest shipments, in order; any order of {', '.join(TIE_BREAKERS)}",
    )
    distance_band_km = models.PositiveIntegerField(
        default=0, help_text="Distances within this band count as equal, so the next tie-breaker decides"
    )
    short_pick_adjusts_stock = models.BooleanField(
        default=True, help_text="A short pick lowers the node's on-hand by the missing units"
    )
    pickup_deadline_hours = models.PositiveIntegerField(default=72)
    no_scan_hours = models.PositiveIntegerField(default=24, help_text="Shipped with no carrier scan for this long")
    transit_days = models.PositiveSmallIntegerField(
        default=5, help_text="Promised delivery = ship time + this, when the order has no deliver-by"
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="routingconfig_one_active"),
            models.CheckConstraint(condition=Q(max_shipments__gte=1), name="routingconfig_max_shipments_min_1"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def clean(self) -> None:
        breakers = self.tie_breakers
        if not isinstance(breakers, list) or any(b not in TIE_BREAKERS for b in breakers):
            raise ValidationError({"tie_breakers": f"a list drawn from {', '.join(TIE_BREAKERS)}"})
        if len(set(breakers)) != len(breakers):
            raise ValidationError({"tie_breakers": "each tie-breaker at most once"})

    @property
    def version_label(self) -> str:
        return f"{self.name}@{self.version}"


class ChannelNodePolicy(models.Model):
    """A channel kind, or one account, may not use this node (e.g. a store for marketplace orders)."""

    config = models.ForeignKey(RoutingConfig, on_delete=models.CASCADE, related_name="channel_policies")
    channel_kind = models.CharField(max_length=16, blank=True, help_text="amazon, walmart, shopify, ebay, tiktok")
    # The channel account by id (channels keeps the reference in the database, deleting the policy with its
    # account): fulfillment names no table of channels, which listens to fulfillment's signals.
    account_id = models.BigIntegerField(null=True, blank=True, db_index=True, verbose_name="account")
    account = account_property()
    location = models.ForeignKey("inventory.Location", on_delete=models.CASCADE, related_name="+")
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        verbose_name_plural = "channel node policies"
        constraints = [
            models.CheckConstraint(
                condition=~Q(channel_kind="") | Q(account_id__isnull=False), name="channelnodepolicy_kind_or_account"
            ),
        ]

    def __str__(self) -> str:
        who = f"account {self.account_id}" if self.account_id else self.channel_kind
        return f"{who} may not use {self.location_id}"

    def clean(self) -> None:
        if self.account_id and self.account is None:
            raise ValidationError({"account_id": f"no channel account has id {self.account_id}"})


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


# The shipments queue's "ship-by soonest" keyset-pages on this (a shipment without a ship-by last): a cursor
# on the nullable column itself cannot point past a NULL.
SHIPMENT_SHIP_BY_KEY = Coalesce("ship_by", models.Value(FAR_FUTURE))


class Shipment(models.Model):
    """One package (or pickup) released to one node. Status moves only through
    fulfillment.services.shipment_transition (the table is fulfillment/status.py)."""

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
    ship_by = models.DateTimeField(null=True, blank=True, help_text="The order's ship-by when released")
    capacity_day = models.DateField(null=True, blank=True, help_text="Node-local day whose capacity it uses")
    decision = models.ForeignKey(
        RoutingDecision, null=True, blank=True, on_delete=models.SET_NULL, related_name="shipments"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["location", "status"], name="shipment_location_status"),
            models.Index(fields=["status", "shipped_at"], name="shipment_status_shipped"),
            models.Index(fields=["tracking_number"], name="shipment_tracking_number"),
            models.Index(SHIPMENT_SHIP_BY_KEY, F("id"), name="shipment_ship_by_key"),
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
    quantity_cancelled = models.PositiveIntegerField(default=0, help_text="Cancelled before shipment")

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
            models.CheckConstraint(
                condition=Q(quantity_cancelled__lte=F("quantity") - F("quantity_shipped") - F("quantity_short")),
                name="shipmentline_all_parts_le_quantity",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_line_id} x{self.quantity}"

    @property
    def quantity_open(self) -> int:
        """Units still to ship from this line."""
        return self.quantity - self.quantity_shipped - self.quantity_short - self.quantity_cancelled


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


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class NodeApiToken(models.Model):
    """A WMS/3PL/TMS token that sees one node's shipments only. Only the sha256 of the key is stored."""

    location = models.ForeignKey("inventory.Location", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_prefix = models.CharField(max_length=8, editable=False, help_text="First characters, to tell keys apart")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "node API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def generate_key() -> str:
        return secrets.token_urlsafe(32)


class IdempotencyRecord(models.Model):
    """The stored answer to one API call with an Idempotency-Key; a replay returns it and changes nothing."""

    scope = models.CharField(max_length=64, help_text='"node:<location id>" or "user:<user id>"')
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotencyrecord_unique_scope_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotencyrecord_created")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"
