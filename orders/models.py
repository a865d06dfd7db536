"""Orders: the order, its lines, the audit trail, holds and the exception queue.

Models hold data and small properties; every write goes through orders/services.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.indexes import OpClass
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Upper

from config.kernel.accounts import account_property

# A time after every real one: what the queues sort by when a case or order names no time (sorted last).
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
# The orders list's "ship-by soonest" sorts and keyset-pages on this (an order without a ship-by last), never
# on the nullable column itself: a cursor cannot point past a NULL, so those orders would drop off page 2.
SHIP_BY_KEY = Coalesce("ship_by", models.Value(FAR_FUTURE))


class OrderStatus(models.TextChoices):
    # Received but not releasable yet: unpaid, in the channel's buyer-remorse window, pending.
    PENDING = "pending", "Pending"
    # Releasable: waiting for order routing and reservation.
    OPEN = "open", "Open"
    BACKORDERED = "backordered", "Backordered"
    # Routed to node(s) with stock reserved.
    ALLOCATED = "allocated", "Allocated"
    # Shipments released to the node(s) for pick and pack.
    RELEASED = "released", "Released"
    PARTIALLY_SHIPPED = "partially_shipped", "Partially shipped"
    SHIPPED = "shipped", "Shipped"
    DELIVERED = "delivered", "Delivered"
    CANCELLED = "cancelled", "Cancelled"
    PARTIALLY_RETURNED = "partially_returned", "Partially returned"
    RETURNED = "returned", "Returned"


class LineStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    OPEN = "open", "Open"
    BACKORDERED = "backordered", "Backordered"
    ALLOCATED = "allocated", "Allocated"
    SHIPPED = "shipped", "Shipped"
    DELIVERED = "delivered", "Delivered"
    CANCELLED = "cancelled", "Cancelled"
    PARTIALLY_RETURNED = "partially_returned", "Partially returned"
    RETURNED = "returned", "Returned"


class CancelInitiator(models.TextChoices):
    """Who a cancellation is charged to: the scorecards count seller-fault cancels apart from the rest."""

    SELLER = "seller", "Seller (no stock, cannot ship)"
    BUYER = "buyer", "Buyer requested"
    MARKETPLACE = "marketplace", "Marketplace (e.g. auto-cancel, payment)"


class ShipToAddress(models.Model):
    """The buyer's PII, kept in one row per order so it can be purged on the channel's schedule."""

    name = models.CharField(max_length=255, blank=True)
    company = models.CharField(max_length=255, blank=True)
    line1 = models.CharField(max_length=255, blank=True)
    line2 = models.CharField(max_length=255, blank=True)
    line3 = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=128, blank=True)
    region = models.CharField(max_length=128, blank=True, help_text="State, province or county")
    postal_code = models.CharField(max_length=32, blank=True, db_index=True)
    country_code = models.CharField(max_length=2, blank=True)
    phone = models.CharField(max_length=64, blank=True)
    email = models.CharField(max_length=254, blank=True)
    address_type = models.CharField(max_length=32, blank=True, help_text="Residential / commercial")
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(OpClass(Upper("email"), name="varchar_pattern_ops"), name="shipto_email_prefix")]
        verbose_name = "ship-to address"
        verbose_name_plural = "ship-to addresses"

    def __str__(self) -> str:
        if self.purged_at:
            return "(purged)"
        return ", ".join(p for p in (self.name, self.city, self.region, self.postal_code, self.country_code) if p)


class Order(models.Model):
    # The channel account the order came from, by id: orders never names channels. The database keeps the
    # reference (a foreign key channels adds, RESTRICT on delete); ``account`` reads it through the kernel's port.
    account_id = models.BigIntegerField(db_index=True)
    account = account_property()
    external_id = models.CharField(max_length=128, help_text="The channel's order id (Amazon orderId, …)")
    # A second channel reference: Walmart customerOrderId, Shopify name "#1001".
    external_reference = models.CharField(max_length=128, blank=True)
    status = models.CharField(max_length=32, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    channel_status = models.CharField(max_length=64, blank=True, help_text="Status as the channel sent it")
    marketplace_fulfilled = models.BooleanField(
        default=False, help_text="Amazon AFN, Walmart WFS, TikTok FBT: recorded, never reserved or routed"
    )
    service_level = models.CharField(
        max_length=32,
        choices=[("ship", "Ship"), ("pickup", "Store pickup"), ("ship_from_store", "Ship from store")],
        default="ship",
    )
    shipping_method = models.CharField(max_length=64, blank=True)
    # The channel's marketplace the order was placed on (Amazon salesChannel.marketplaceId): an
    # account may sell on several, and the channel wants the order's own one back.
    channel_marketplace_id = models.CharField(max_length=64, blank=True)
    # Store pickup: the store the buyer chose. The channel's id for it is kept as sent, so an order
    # whose store is not mapped yet is never routed to another store.
    pickup_location = models.ForeignKey(
        "inventory.Location", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    pickup_location_ref = models.CharField(max_length=255, blank=True, help_text="The channel's id of the pickup store")
    placed_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    ship_by = models.DateTimeField(null=True, blank=True, help_text="Earliest line ship-by")
    deliver_by = models.DateTimeField(null=True, blank=True)
    currency = models.CharField(max_length=3)
    total_amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    ship_to = models.OneToOneField(
        ShipToAddress, null=True, blank=True, on_delete=models.SET_NULL, related_name="order"
    )
    customer_name = models.CharField(max_length=255, blank=True, help_text="For search; purged with the address")
    on_hold = models.BooleanField(default=False, help_text="True while any hold is active")
    # A buyer asked the channel to cancel (Walmart intentToCancel, Amazon cancellationRequest, eBay
    # cancelRequests, TikTok cancel requests): the order is held until the request is settled.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_request_reason = models.CharField(max_length=255, blank=True)
    # Who the order's cancelled units are charged to (the latest cancellation's initiator).
    cancel_initiator = models.CharField(max_length=16, choices=CancelInitiator.choices, blank=True)
    # An exchange's replacement order (returns): linked to the order whose return it replaces. Waybill made
    # it, the channel never saw it: it is routed and shipped like any order but never confirmed to the channel.
    replaces_order = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replacement_orders"
    )
    # Watermark: an older channel payload never moves the order backwards.
    source_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account_id", "external_id"], name="order_unique_account_external_id"),
            models.CheckConstraint(condition=Q(total_amount__gte=0), name="order_total_non_negative"),
        ]
        indexes = [
            models.Index(fields=["status", "ship_by"], name="order_status_ship_by"),
            # The console's filter by channel (one account per channel kind, or a few), status and ship-by window.
            models.Index(fields=["account_id", "status", "ship_by"], name="order_account_status_ship_by"),
            models.Index(fields=["-placed_at", "-id"], name="order_placed_at"),
            models.Index(fields=["account_id", "-placed_at"], name="order_account_placed"),
            models.Index(fields=["on_hold", "status"], name="order_hold_status", condition=Q(on_hold=True)),
            models.Index(fields=["ship_by"], name="order_ship_by"),
            models.Index(SHIP_BY_KEY, F("id"), name="order_ship_by_key"),
            # Search without pg_trgm: prefix matches (orders/search.py). With pg_trgm, migration 0005 adds
            # trigram indexes for matches anywhere in the value.
            models.Index(OpClass(Upper("external_id"), name="varchar_pattern_ops"), name="order_external_id_prefix"),
            models.Index(
                OpClass(Upper("external_reference"), name="varchar_pattern_ops"), name="order_external_ref_prefix"
            ),
            models.Index(OpClass(Upper("customer_name"), name="varchar_pattern_ops"), name="order_customer_prefix"),
        ]
        permissions = [("override_order", "Can apply manual overrides to orders")]

    def __str__(self) -> str:
        return self.external_reference or self.external_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({OrderStatus.CANCELLED, OrderStatus.RETURNED})


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    external_id = models.CharField(max_length=128, help_text="The channel's line id (orderItemId, lineNumber…)")
    # TikTok sends one line item per unit: their ids are kept here for shipping and cancelling.
    external_unit_ids = models.JSONField(default=list, blank=True)
    sku = models.ForeignKey("inventory.Sku", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    channel_sku = models.CharField(max_length=128, help_text="SKU as the channel sent it")
    title = models.CharField(max_length=500, blank=True)
    quantity = models.PositiveIntegerField()
    quantity_cancelled = models.PositiveIntegerField(default=0)
    quantity_shipped = models.PositiveIntegerField(default=0)
    quantity_returned = models.PositiveIntegerField(default=0)
    unit_price = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32, choices=LineStatus.choices, default=LineStatus.PENDING)
    channel_status = models.CharField(max_length=64, blank=True)
    ship_by = models.DateTimeField(null=True, blank=True)
    deliver_by = models.DateTimeField(null=True, blank=True)
    is_backorder_allowed = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "external_id"], name="orderline_unique_external_id"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="orderline_quantity_positive"),
            models.CheckConstraint(
                condition=Q(quantity_cancelled__lte=F("quantity") - F("quantity_shipped")),
                name="orderline_cancelled_plus_shipped_le_ordered",
            ),
            models.CheckConstraint(
                condition=Q(quantity_returned__lte=F("quantity_shipped")),
                name="orderline_returned_le_shipped",
            ),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="orderline_price_non_negative"),
        ]
        indexes = [
            models.Index(fields=["sku", "status"], name="orderline_sku_status"),
            models.Index(
                OpClass(Upper("channel_sku"), name="varchar_pattern_ops"), name="orderline_channel_sku_prefix"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel_sku} x{self.quantity}"

    @property
    def quantity_open(self) -> int:
        return self.quantity - self.quantity_cancelled - self.quantity_shipped


class OrderEvent(models.Model):
    """Append-only audit trail: every transition, hold and override, with its actor."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=48)
    from_status = models.CharField(max_length=32, blank=True)
    to_status = models.CharField(max_length=32, blank=True)
    # A user, or a named system actor ("sync:amazon-us", "router", "wms:dallas").
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.CharField(max_length=150)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="Before/after and details")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["order", "created_at"], name="orderevent_order_time")]
        constraints = [models.CheckConstraint(condition=~Q(actor=""), name="orderevent_actor_required")]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor}"

    @property
    def label(self) -> str:
        return self.kind.replace("_", " ").capitalize()


class HoldKind(models.TextChoices):
    FRAUD = "fraud", "Fraud review"
    PAYMENT = "payment", "Payment"
    ADDRESS = "address", "Address"
    MANUAL = "manual", "Manual"
    UNMAPPED_SKU = "unmapped_sku", "Unmapped SKU"
    UNMAPPED_LOCATION = "unmapped_location", "Unmapped pickup store"
    CANCEL_REQUEST = "cancel_request", "Buyer cancel request"
    AWAITING_RETURN = "awaiting_return", "Exchange awaits its return"


class Hold(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="holds")
    kind = models.CharField(max_length=32, choices=HoldKind.choices)
    reason = models.TextField()
    placed_by = models.CharField(max_length=150)
    placed_at = models.DateTimeField(auto_now_add=True)
    released_by = models.CharField(max_length=150, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.TextField(blank=True)

    class Meta:
        constraints = [
            # One active hold of a kind per order.
            models.UniqueConstraint(
                fields=["order", "kind"],
                condition=Q(released_at__isnull=True),
                name="hold_one_active_per_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} hold"

    @property
    def is_active(self) -> bool:
        return self.released_at is None


class ExceptionKind(models.TextChoices):
    UNMAPPED_SKU = "unmapped_sku", "Unmapped SKU"
    UNMAPPED_LOCATION = "unmapped_location", "Unmapped pickup store"
    INSUFFICIENT_STOCK = "insufficient_stock", "Insufficient stock"
    NO_NODE = "no_node", "No node can ship"
    OVER_CAPACITY = "over_capacity", "Node over capacity"
    SHIP_BY_UNREACHABLE = "ship_by_unreachable", "Ship-by unreachable"
    SHORT_PICK = "short_pick", "Short pick"
    ADDRESS = "address", "Address problem"
    SYNC_FAILURE = "sync_failure", "Channel sync failure"
    INBOUND_FAILED = "inbound_failed", "Inbound event failed"
    OUTBOX_PARKED = "outbox_parked", "Outbox message parked"
    TRACKING_MISSING = "tracking_missing", "No carrier scan"
    DELIVERY_LATE = "delivery_late", "Delivery late"
    PICKUP_EXPIRED = "pickup_expired", "Pickup expired"
    CANCEL_REQUEST = "cancel_request", "Buyer cancel request"
    LISTING_NOT_FOUND = "listing_not_found", "Listing not found at channel"
    METRIC_WARNING = "metric_warning", "Scorecard early warning"
    # Detected as the events arrive (fulfillment.services.detection), not by a nightly scan.
    SHIP_BY_AT_RISK = "ship_by_at_risk", "Ship-by at risk"
    LATE_SHIPMENT = "late_shipment", "Late shipment"
    DELIVERY_EXCEPTION = "delivery_exception", "Carrier delivery exception"
    STALLED_TRACKING = "stalled_tracking", "Tracking stalled"
    OVERSELL = "oversell", "Oversell reported by a channel"
    PUSH_FAILING = "push_failing", "Push failing repeatedly"
    REFUND_MANUAL = "refund_manual", "Refund at the channel by hand"
    # Reconciliation: a drift with a channel that was not healed automatically; a node's count off by more
    # than the node's tolerance.
    RECONCILE_DRIFT = "reconcile_drift", "Drift with a channel"
    STOCK_COUNT = "stock_count", "Node count differs"
    OTHER = "other", "Other"


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


# The queue's order (orders.selectors.exception_case_queue): time left, then impact. A case with no due time
# and no order ship-by sorts after every timed one (FAR_FUTURE, defined at the top).
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}
# Cases whose kind costs a scorecard metric (late shipment rate, valid tracking, on-time delivery,
# cancellations) rank before others of the same urgency.
SCORECARD_KINDS = (
    ExceptionKind.SHIP_BY_AT_RISK,
    ExceptionKind.LATE_SHIPMENT,
    ExceptionKind.SHIP_BY_UNREACHABLE,
    ExceptionKind.NO_NODE,
    ExceptionKind.INSUFFICIENT_STOCK,
    ExceptionKind.SHORT_PICK,
    ExceptionKind.TRACKING_MISSING,
    ExceptionKind.DELIVERY_LATE,
    ExceptionKind.DELIVERY_EXCEPTION,
    ExceptionKind.STALLED_TRACKING,
    ExceptionKind.CANCEL_REQUEST,
    ExceptionKind.OVERSELL,
    ExceptionKind.METRIC_WARNING,
)
CASE_IMPACT = models.Case(
    *[
        models.When(kind__in=[str(k) for k in SCORECARD_KINDS], severity=str(sev), then=models.Value(rank))
        for sev, rank in SEVERITY_RANK.items()
    ],
    *[models.When(severity=str(sev), then=models.Value(rank + 10)) for sev, rank in SEVERITY_RANK.items()],
    default=models.Value(20),
    output_field=models.IntegerField(),
)


class ExceptionCase(models.Model):
    """One row in the exception queue. At most one unresolved case per dedupe key."""

    kind = models.CharField(max_length=32, choices=ExceptionKind.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.MEDIUM)
    status = models.CharField(max_length=16, choices=CaseStatus.choices, default=CaseStatus.OPEN)
    title = models.CharField(max_length=255)
    detail = models.TextField(blank=True)
    dedupe_key = models.CharField(max_length=255)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="exception_cases",
    )
    due_at = models.DateTimeField(null=True, blank=True)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.CASCADE, related_name="exception_cases")
    # The channel account by id (a foreign key channels adds, CASCADE on delete), read through the kernel's port.
    account_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    account = account_property()
    sku = models.ForeignKey(
        "inventory.Sku", null=True, blank=True, on_delete=models.CASCADE, related_name="exception_cases"
    )
    opened_by = models.CharField(max_length=150)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The queue's sort keys, kept by the database so the queue reads an index in order at any size:
    # urgency_at = the due time, else the order's ship-by, else FAR_FUTURE (the triggers of migration 0009
    # set it on every insert and update of a case, and on a change of its order's ship-by; an instance
    # saved in this process holds the value only after refresh_from_db); impact = CASE_IMPACT (0 for a kind
    # that costs a scorecard metric, by severity, then 10+ by severity).
    urgency_at = models.DateTimeField(default=FAR_FUTURE, editable=False)
    impact = models.GeneratedField(expression=CASE_IMPACT, output_field=models.IntegerField(), db_persist=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dedupe_key"],
                condition=~Q(status="resolved"),
                name="exceptioncase_one_unresolved_per_key",
            ),
            models.CheckConstraint(
                condition=Q(status="resolved", resolved_at__isnull=False) | ~Q(status="resolved"),
                name="exceptioncase_resolved_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "severity", "due_at"], name="exceptioncase_queue"),
            models.Index(fields=["kind", "status"], name="exceptioncase_kind_status"),
            models.Index(
                fields=["urgency_at", "impact", "id"], name="exceptioncase_urgency", condition=~Q(status="resolved")
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def _key_id(self, prefix: str) -> int | None:
        # The id a case's dedupe key names ("outbox_parked:12", "delivery_late:shipment=34").
        if not self.dedupe_key.startswith(prefix):
            return None
        tail = self.dedupe_key[len(prefix) :].split(":")[0]
        return int(tail) if tail.isdigit() else None

    @property
    def outbox_message_id(self) -> int | None:
        return self._key_id("outbox_parked:")

    @property
    def shipment_id(self) -> int | None:
        return self._key_id(f"{self.kind}:shipment=")
