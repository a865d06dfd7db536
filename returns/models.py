"""Returns: return authorisations (RMAs), their lines and dispositions, and refunds.

Models hold data and small properties; every write goes through returns/services.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class ReturnStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    AUTHORIZED = "authorized", "Authorized"
    IN_TRANSIT = "in_transit", "In transit"
    RECEIVED = "received", "Received"
    INSPECTED = "inspected", "Inspected"
    COMPLETED = "completed", "Completed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


class ReturnReason(models.TextChoices):
    DAMAGED = "damaged", "Damaged"
    DEFECTIVE = "defective", "Defective"
    WRONG_ITEM = "wrong_item", "Wrong item"
    NOT_AS_DESCRIBED = "not_as_described", "Not as described"
    NO_LONGER_NEEDED = "no_longer_needed", "No longer needed"
    OTHER = "other", "Other"


class ReturnSource(models.TextChoices):
    CONSOLE = "console", "Console"
    CHANNEL = "channel", "Channel"
    API = "api", "API (returns 3PL)"


class ReturnAuthorization(models.Model):
    rma_number = models.CharField(max_length=64, unique=True)
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="returns")
    status = models.CharField(max_length=16, choices=ReturnStatus.choices, default=ReturnStatus.REQUESTED)
    reason = models.CharField(max_length=32, choices=ReturnReason.choices, default=ReturnReason.OTHER)
    customer_note = models.TextField(blank=True)
    return_location = models.ForeignKey(
        "inventory.Location", null=True, blank=True, on_delete=models.PROTECT, related_name="returns"
    )
    return_tracking_number = models.CharField(max_length=128, blank=True)
    carrier = models.ForeignKey(
        "fulfillment.Carrier", null=True, blank=True, on_delete=models.SET_NULL, related_name="returns"
    )
    exchange_order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    external_id = models.CharField(max_length=128, blank=True, help_text="The channel's return id")
    source = models.CharField(max_length=16, choices=ReturnSource.choices, default=ReturnSource.CONSOLE)
    # The channel's own status of the return (Shopify REQUESTED/OPEN/CLOSED, TikTok AWAITING_BUYER_SHIP…).
    channel_status = models.CharField(max_length=64, blank=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    authorized_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    inspected_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="Completed, rejected or cancelled")

    class Meta:
        verbose_name = "return authorization"
        indexes = [
            models.Index(fields=["status", "created_at"], name="rma_status_created"),
            models.Index(fields=["external_id"], condition=~Q(external_id=""), name="rma_external_id"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(created_by=""), name="rma_created_by_required"),
            # A channel's return becomes one RMA: ingesting it again updates that one.
            models.UniqueConstraint(
                fields=["order", "external_id"], condition=~Q(external_id=""), name="rma_unique_order_external_id"
            ),
        ]

    def __str__(self) -> str:
        return self.rma_number


class Disposition(models.TextChoices):
    PENDING = "pending", "Pending"
    RESTOCK = "restock", "Restock"
    REFURBISH = "refurbish", "Refurbish"
    DAMAGED = "damaged", "Damaged"
    DESTROY = "destroy", "Destroy"
    RETURN_TO_VENDOR = "return_to_vendor", "Return to vendor"


class ReturnLine(models.Model):
    rma = models.ForeignKey(ReturnAuthorization, on_delete=models.CASCADE, related_name="lines")
    order_line = models.ForeignKey("orders.OrderLine", on_delete=models.PROTECT, related_name="return_lines")
    quantity = models.PositiveIntegerField()
    quantity_received = models.PositiveIntegerField(default=0)
    quantity_inspected = models.PositiveIntegerField(default=0)
    # The latest disposition given to units of this line; each unit's own is a ReturnUnit row.
    disposition = models.CharField(max_length=32, choices=Disposition.choices, default=Disposition.PENDING)
    reason = models.CharField(max_length=32, choices=ReturnReason.choices, blank=True)
    external_id = models.CharField(max_length=128, blank=True, help_text="The channel's return line id")
    note = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="returnline_quantity_positive"),
            models.CheckConstraint(
                condition=Q(quantity_received__lte=F("quantity")), name="returnline_received_le_quantity"
            ),
            models.CheckConstraint(
                condition=Q(quantity_inspected__lte=F("quantity_received")), name="returnline_inspected_le_received"
            ),
            models.UniqueConstraint(fields=["rma", "order_line"], name="returnline_unique_rma_order_line"),
        ]

    def __str__(self) -> str:
        return f"{self.order_line_id} x{self.quantity}"


class ReturnReceipt(models.Model):
    """One posting of returned units at a node (the scanner page, a returns 3PL, a channel). The same
    receipt posted again (same idempotency key) changes nothing."""

    rma = models.ForeignKey(ReturnAuthorization, on_delete=models.PROTECT, related_name="receipts")
    location = models.ForeignKey("inventory.Location", on_delete=models.PROTECT, related_name="+")
    idempotency_key = models.CharField(max_length=255, unique=True)
    actor = models.CharField(max_length=150)
    # What was posted and what was applied, for a replay's answer.
    result = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(actor=""), name="returnreceipt_actor_required")]

    def __str__(self) -> str:
        return f"receipt {self.idempotency_key}"


class ReturnUnit(models.Model):
    """Units of one return line received at a node and what became of them (their disposition):
    pending until inspected, then restock, refurbish, damaged, destroy or return to vendor."""

    line = models.ForeignKey(ReturnLine, on_delete=models.PROTECT, related_name="units")
    receipt = models.ForeignKey(ReturnReceipt, null=True, blank=True, on_delete=models.PROTECT, related_name="units")
    location = models.ForeignKey("inventory.Location", on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    disposition = models.CharField(max_length=32, choices=Disposition.choices)
    # Units inspected out of a pending row: the row they came from.
    inspected_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    quantity_inspected = models.PositiveIntegerField(default=0, help_text="Of a pending row: units inspected since")
    note = models.TextField(blank=True)
    actor = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="returnunit_quantity_positive"),
            models.CheckConstraint(
                condition=Q(quantity_inspected__lte=F("quantity")), name="returnunit_inspected_le_quantity"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.disposition}"


class ExchangePolicy(models.TextChoices):
    BEFORE_RETURN = "before_return", "Ship the replacement at once"
    AFTER_RECEIPT = "after_receipt", "Ship the replacement once the return is received"


class ReturnPolicy(models.Model):
    """A channel account's return settings (a default applies to accounts without a row)."""

    account = models.OneToOneField("channels.ChannelAccount", on_delete=models.CASCADE, related_name="return_policy")
    exchange_policy = models.CharField(
        max_length=16, choices=ExchangePolicy.choices, default=ExchangePolicy.AFTER_RECEIPT
    )
    overdue_after_days = models.PositiveSmallIntegerField(
        default=14, help_text="An authorised return not received after this many days shows as overdue"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"return policy of {self.account_id}"


class RefundStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent to channel"
    CONFIRMED = "confirmed", "Confirmed"
    FAILED = "failed", "Failed"
    # The channel has no refund call we can use: a person refunds at the channel (an exception case).
    MANUAL = "manual", "Refund at the channel by hand"


class Refund(models.Model):
    rma = models.ForeignKey(
        ReturnAuthorization, null=True, blank=True, on_delete=models.PROTECT, related_name="refunds"
    )
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    shipping_amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=RefundStatus.choices, default=RefundStatus.PENDING)
    external_id = models.CharField(max_length=128, blank=True, help_text="The channel's refund id")
    # Who started it: Waybill (pushed to the channel) or the channel (seen on the order, recorded only).
    from_channel = models.BooleanField(default=False)
    # A refund asked twice with the same key is one refund (a double-clicked form, a replayed API call).
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    outbox_message = models.ForeignKey(
        "channels.OutboxMessage", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    channel_response = models.JSONField(default=dict, blank=True, help_text="The channel's answer as recorded")
    exception_case = models.ForeignKey(
        "orders.ExceptionCase", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(condition=Q(shipping_amount__gte=0), name="refund_shipping_non_negative"),
            models.CheckConstraint(condition=Q(shipping_amount__lte=F("amount")), name="refund_shipping_le_amount"),
            models.CheckConstraint(condition=~Q(created_by=""), name="refund_created_by_required"),
            models.UniqueConstraint(
                fields=["order", "external_id"],
                condition=~Q(external_id=""),
                name="refund_unique_order_external_id",
            ),
        ]
        indexes = [models.Index(fields=["order", "created_at"], name="refund_order_created")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} ({self.status})"


class RefundLine(models.Model):
    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, related_name="lines")
    order_line = models.ForeignKey("orders.OrderLine", on_delete=models.PROTECT, related_name="refund_lines")
    quantity = models.PositiveIntegerField(default=0)
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refundline_amount_positive"),
            models.UniqueConstraint(fields=["refund", "order_line"], name="refundline_unique_refund_line"),
        ]

    def __str__(self) -> str:
        return f"{self.order_line_id}: {self.amount}"


class ReturnEvent(models.Model):
    """Append-only trail of an RMA: every transition, receipt, inspection, refund and exchange, with its actor."""

    rma = models.ForeignKey(ReturnAuthorization, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=48)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    actor = models.CharField(max_length=150)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["rma", "created_at"], name="returnevent_rma_time")]
        constraints = [models.CheckConstraint(condition=~Q(actor=""), name="returnevent_actor_required")]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor}"

    @property
    def label(self) -> str:
        return self.kind.replace("_", " ").capitalize()


class ReturnSyncState(models.Model):
    """Where the last read of a channel account's returns got to (one read per account at a time)."""

    account = models.OneToOneField("channels.ChannelAccount", on_delete=models.CASCADE, related_name="returns_sync")
    cursor = models.DateTimeField(null=True, blank=True, help_text="Returns changed before this were read")
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    seen = models.PositiveIntegerField(default=0, help_text="Returns read in the last run")
    created = models.PositiveIntegerField(default=0, help_text="RMAs opened by the last run")

    def __str__(self) -> str:
        return f"returns sync of {self.account_id}"


class WaitingChannelReturn(models.Model):
    """A channel's return whose order is not in Waybill yet (the order sync has not brought it, or it is older
    than the order read's window): kept as the channel reported it, and ingested once its order arrives; past
    the wait, a case asks a person to look (returns.services.channel)."""

    account = models.ForeignKey("channels.ChannelAccount", on_delete=models.CASCADE, related_name="waiting_returns")
    # The channel's return id (a refund-derived id for channels that report refunds, not returns).
    key = models.CharField(max_length=255)
    order_external_id = models.CharField(max_length=128)
    # The return as the channel last reported it (channels.connectors.base.NormalizedReturn as JSON).
    payload = models.JSONField()
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    last_tried_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, help_text="Why its last ingest failed once its order was here")
    case_id = models.PositiveBigIntegerField(null=True, blank=True, help_text="The exception case opened for it")
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="Ingested once its order arrived")
    rma = models.ForeignKey(ReturnAuthorization, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "key"], name="waiting_return_unique_account_key"),
        ]
        indexes = [
            models.Index(
                fields=["account", "first_seen_at"], condition=Q(resolved_at__isnull=True), name="waiting_return_open"
            ),
        ]

    def __str__(self) -> str:
        return f"return {self.key} of order {self.order_external_id} (account {self.account_id})"
