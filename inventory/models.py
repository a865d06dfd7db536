"""Inventory: SKUs, fulfilment nodes, stock levels, the stock ledger, reservations and inbound supply.

Models hold data and small properties; every write goes through inventory/services.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import F, Q


class Sku(models.Model):
    code = models.CharField(max_length=128, unique=True, help_text="The seller SKU")
    name = models.CharField(max_length=500)
    barcode = models.CharField(max_length=64, blank=True, help_text="UPC / EAN / GTIN")
    is_active = models.BooleanField(default=True)
    allow_backorder = models.BooleanField(default=False)
    is_preorder = models.BooleanField(default=False)
    safety_stock = models.PositiveIntegerField(default=0, help_text="Default for new stock levels")
    weight_grams = models.PositiveIntegerField(null=True, blank=True)
    unit_cost = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    unit_cost_currency = models.CharField(max_length=3, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "SKU"
        verbose_name_plural = "SKUs"
        indexes = [models.Index(fields=["name"], name="sku_name")]
        constraints = [
            models.CheckConstraint(
                condition=Q(unit_cost__isnull=True) | Q(unit_cost__gte=0), name="sku_unit_cost_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class LocationKind(models.TextChoices):
    WAREHOUSE = "warehouse", "Warehouse"
    STORE = "store", "Store"
    THREEPL = "threepl", "3PL"


def all_weekdays() -> list[int]:
    return list(range(7))


class Location(models.Model):
    """A fulfilment node: a warehouse, a store or a 3PL."""

    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=LocationKind.choices, default=LocationKind.WAREHOUSE)
    is_active = models.BooleanField(default=True)
    line1 = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=128, blank=True)
    region = models.CharField(max_length=128, blank=True, help_text="State, province or county")
    postal_code = models.CharField(max_length=32, blank=True)
    country_code = models.CharField(max_length=2, blank=True)
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. America/Chicago")
    cutoff_time = models.TimeField(
        null=True, blank=True, help_text="Local time; orders released before it ship the same day"
    )
    daily_capacity = models.PositiveIntegerField(
        null=True, blank=True, help_text="Shipments per day; empty = unlimited"
    )
    ship_days = ArrayField(
        models.PositiveSmallIntegerField(validators=[MaxValueValidator(6)]),
        default=all_weekdays,
        help_text="Weekdays the node ships, 0 = Monday … 6 = Sunday (e.g. 0,1,2,3,4 for Monday to Friday)",
    )
    closed_on = ArrayField(
        models.DateField(),
        default=list,
        blank=True,
        help_text="Holidays and other days the node does not ship (YYYY-MM-DD, comma-separated)",
    )
    cost_per_shipment = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0"))
    can_ship = models.BooleanField(default=True)
    can_pickup = models.BooleanField(default=False, help_text="Buy online, pick up in store")
    ships_from_store = models.BooleanField(default=False)
    priority = models.IntegerField(default=0, help_text="Tie-breaker in order routing; lower wins")
    # Reconciliation of WMS snapshots: a count within this many units of on-hand is applied at once; a
    # bigger difference becomes an adjustment proposal and a case. Empty: every count is applied.
    count_tolerance_units = models.PositiveIntegerField(
        null=True, blank=True, help_text="Snapshot differences up to this many units apply automatically"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(cost_per_shipment__gte=0), name="location_cost_non_negative"),
            models.CheckConstraint(
                condition=Q(ship_days__contained_by=list(range(7))), name="location_ship_days_are_weekdays"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class StockLevel(models.Model):
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="stock_levels")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="stock_levels")
    on_hand = models.IntegerField(default=0, help_text="Sellable units physically at the node")
    reserved = models.IntegerField(default=0, help_text="Σ active reservations")
    safety_stock = models.PositiveIntegerField(default=0)
    # Non-sellable buckets: never counted as available.
    receiving = models.IntegerField(default=0)
    damaged = models.IntegerField(default=0)
    quarantine = models.IntegerField(default=0)
    # Returned units awaiting refurbishment (non-sellable, like damaged and quarantine).
    refurbish = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sku", "location"], name="stocklevel_unique_sku_location"),
            models.CheckConstraint(
                condition=Q(reserved__gte=0, reserved__lte=F("on_hand")),
                name="stocklevel_reserved_within_on_hand",
            ),
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="stocklevel_on_hand_non_negative"),
            models.CheckConstraint(
                condition=Q(receiving__gte=0, damaged__gte=0, quarantine__gte=0),
                name="stocklevel_buckets_non_negative",
            ),
            models.CheckConstraint(condition=Q(refurbish__gte=0), name="stocklevel_refurbish_non_negative"),
        ]
        indexes = [models.Index(fields=["location", "sku"], name="stocklevel_location_sku")]

    def __str__(self) -> str:
        return f"{self.sku_id}@{self.location_id}: {self.on_hand}/{self.reserved}"

    @property
    def atp(self) -> int:
        """Available to promise at this node."""
        return max(self.on_hand - self.reserved - self.safety_stock, 0)


class StockBucket(models.TextChoices):
    SELLABLE = "sellable", "Sellable"
    RECEIVING = "receiving", "Receiving"
    DAMAGED = "damaged", "Damaged"
    QUARANTINE = "quarantine", "Quarantine"
    REFURBISH = "refurbish", "Refurbish"


class MovementReason(models.TextChoices):
    RECEIVE = "receive", "Receive"
    SHIP = "ship", "Ship"
    ADJUST = "adjust", "Adjustment"
    CYCLE_COUNT = "cycle_count", "Cycle count"
    TRANSFER_OUT = "transfer_out", "Transfer out"
    TRANSFER_IN = "transfer_in", "Transfer in"
    RETURN_RESTOCK = "return_restock", "Return restock"
    DAMAGE = "damage", "Damage"
    QUARANTINE = "quarantine", "Quarantine"
    RELEASE_QUARANTINE = "release_quarantine", "Release from quarantine"
    # Returns: units back from a buyer land in receiving, then leave it by their inspected disposition.
    RETURN_RECEIVE = "return_receive", "Return received"
    RETURN_DISPOSE = "return_dispose", "Return disposed (destroyed)"
    RETURN_TO_VENDOR = "return_to_vendor", "Returned to vendor"


class StockMovement(models.Model):
    """Append-only stock ledger: for each (sku, location), on_hand == Σ delta over the sellable bucket."""

    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="movements")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="movements")
    delta = models.IntegerField()
    bucket = models.CharField(max_length=16, choices=StockBucket.choices, default=StockBucket.SELLABLE)
    reason = models.CharField(max_length=32, choices=MovementReason.choices)
    reference = models.CharField(max_length=128, blank=True, help_text="PO number, shipment id, RMA…")
    note = models.TextField(blank=True)
    # A user, or a named system actor ("wms:dallas", "returns").
    actor = models.CharField(max_length=150)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # A replayed adjustment with the same key changes nothing.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    balance_after = models.IntegerField(null=True, blank=True, help_text="The bucket's balance after this movement")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(delta=0), name="stockmovement_delta_non_zero"),
            models.CheckConstraint(condition=~Q(actor=""), name="stockmovement_actor_required"),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="stockmovement_unique_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["sku", "location", "created_at"], name="stockmovement_sku_loc_time"),
            models.Index(fields=["created_at"], name="stockmovement_created_at"),
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} {self.delta:+d}"


class ReservationStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RELEASED = "released", "Released"
    CONSUMED = "consumed", "Consumed"


class Reservation(models.Model):
    order_line = models.ForeignKey("orders.OrderLine", on_delete=models.CASCADE, related_name="reservations")
    # No single-column indexes on sku / location: every index is written under the hot stock row's
    # lock (the reservation insert shares its statement); the (sku, location) active index serves reads.
    # The database holds (sku, location) to an existing StockLevel row with one composite foreign key,
    # checked at the statement (migration 0009, "reservation_stocklevel_fk"): the row the reservation
    # statement has just updated and holds locked, so one check instead of a SKU check and a location
    # check at COMMIT under that lock. The stock row's own foreign keys keep the SKU and the location.
    sku = models.ForeignKey(
        Sku, on_delete=models.PROTECT, related_name="reservations", db_index=False, db_constraint=False
    )
    location = models.ForeignKey(
        Location, on_delete=models.PROTECT, related_name="reservations", db_index=False, db_constraint=False
    )
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=ReservationStatus.choices, default=ReservationStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="reservation_quantity_positive"),
        ]
        indexes = [
            models.Index(fields=["sku", "location"], condition=Q(status="active"), name="reservation_active_sku_loc"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} of {self.sku_id}@{self.location_id} ({self.status})"


class InboundKind(models.TextChoices):
    PO = "po", "Purchase order"
    ASN = "asn", "Advance shipping notice"


class InboundStatus(models.TextChoices):
    OPEN = "open", "Open"
    PARTIALLY_RECEIVED = "partially_received", "Partially received"
    RECEIVED = "received", "Received"
    CANCELLED = "cancelled", "Cancelled"


class InboundShipment(models.Model):
    """Expected supply (a PO or an ASN): the source of preorder and backorder promises."""

    kind = models.CharField(max_length=8, choices=InboundKind.choices, default=InboundKind.PO)
    reference = models.CharField(max_length=128, unique=True, help_text="PO or ASN number")
    supplier = models.CharField(max_length=255, blank=True)
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="inbound_shipments")
    status = models.CharField(max_length=32, choices=InboundStatus.choices, default=InboundStatus.OPEN)
    expected_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "expected_at"], name="inbound_status_expected")]

    def __str__(self) -> str:
        return self.reference


class InboundLine(models.Model):
    shipment = models.ForeignKey(InboundShipment, on_delete=models.CASCADE, related_name="lines")
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="inbound_lines")
    quantity_expected = models.PositiveIntegerField()
    # Over-receipt is allowed: suppliers ship more than ordered.
    quantity_received = models.PositiveIntegerField(default=0)
    expected_at = models.DateTimeField(null=True, blank=True, help_text="Overrides the shipment's date")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity_expected__gt=0), name="inboundline_expected_positive"),
            models.CheckConstraint(condition=Q(quantity_received__gte=0), name="inboundline_received_non_negative"),
        ]
        indexes = [models.Index(fields=["sku"], name="inboundline_sku")]

    def __str__(self) -> str:
        return f"{self.sku_id} x{self.quantity_expected}"

    @property
    def quantity_outstanding(self) -> int:
        return max(self.quantity_expected - self.quantity_received, 0)


class StockSnapshot(models.Model):
    """One applied WMS snapshot (absolute counts). A replay with the same key returns ``result`` unchanged."""

    idempotency_key = models.CharField(max_length=255, unique=True)
    actor = models.CharField(max_length=150)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source = models.CharField(max_length=150, blank=True, help_text="The WMS or node that sent it")
    row_count = models.PositiveIntegerField()
    result = models.JSONField(default=dict, help_text="What was applied: one entry per row with before/after")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(actor=""), name="stocksnapshot_actor_required")]

    def __str__(self) -> str:
        return f"snapshot {self.idempotency_key}"


class CountProposalStatus(models.TextChoices):
    AUTO_APPLIED = "auto_applied", "Applied automatically"
    PROPOSED = "proposed", "Proposed: a person checks"
    APPLIED = "applied", "Applied by a person"
    REJECTED = "rejected", "Rejected"


class StockCountProposal(models.Model):
    """A node's count (a WMS or 3PL snapshot row) that differed from Waybill's on-hand: applied at once
    within the node's tolerance, otherwise proposed until a person applies or rejects it."""

    snapshot = models.ForeignKey(StockSnapshot, on_delete=models.CASCADE, related_name="proposals")
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="count_proposals")
    counted = models.IntegerField(help_text="The node's count (theirs)")
    on_hand = models.IntegerField(help_text="Waybill's on-hand when the count arrived (ours)")
    delta = models.IntegerField()
    status = models.CharField(max_length=16, choices=CountProposalStatus.choices)
    movement = models.ForeignKey(StockMovement, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    case = models.ForeignKey("orders.ExceptionCase", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_by = models.CharField(max_length=150, blank=True)
    decision_note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(delta=0), name="stockcountproposal_delta_non_zero"),
            # One proposal waiting per SKU and node: a later count supersedes it.
            models.UniqueConstraint(
                fields=["sku", "location"], condition=Q(status="proposed"), name="stockcountproposal_one_waiting"
            ),
        ]
        indexes = [models.Index(fields=["location", "created_at"], name="stockcountproposal_loc_time")]

    def __str__(self) -> str:
        return f"count {self.counted} vs {self.on_hand} of {self.sku_id}@{self.location_id}"
