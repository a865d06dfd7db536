"""Returns: return authorisations (RMAs), their lines and dispositions, and refunds.

Models hold data and small properties; every write goes through returns/services.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q


class ReturnStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    AUTHORIZED = "authorized", "Authorized"
    IN_TRANSIT = "in_transit", "In transit"
    RECEIVED = "received", "Received"
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
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    received_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "return authorization"
        indexes = [
            models.Index(fields=["status", "created_at"], name="rma_status_created"),
            models.Index(fields=["external_id"], condition=~Q(external_id=""), name="rma_external_id"),
        ]
        constraints = [models.CheckConstraint(condition=~Q(created_by=""), name="rma_created_by_required")]

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
    disposition = models.CharField(max_length=32, choices=Disposition.choices, default=Disposition.PENDING)
    note = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="returnline_quantity_positive"),
            models.CheckConstraint(
                condition=Q(quantity_received__lte=F("quantity")), name="returnline_received_le_quantity"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_line_id} x{self.quantity}"


class RefundStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent to channel"
    CONFIRMED = "confirmed", "Confirmed"
    FAILED = "failed", "Failed"


class Refund(models.Model):
    rma = models.ForeignKey(
        ReturnAuthorization, null=True, blank=True, on_delete=models.PROTECT, related_name="refunds"
    )
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=RefundStatus.choices, default=RefundStatus.PENDING)
    external_id = models.CharField(max_length=128, blank=True, help_text="The channel's refund id")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(condition=~Q(created_by=""), name="refund_created_by_required"),
        ]
        indexes = [models.Index(fields=["order", "created_at"], name="refund_order_created")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} ({self.status})"
