"""Channels: marketplace accounts, SKU mappings, raw inbound payloads, the outbox and sync runs.

Models hold data and small properties; every write goes through channels/services.
Credentials are stored only as a Fernet token (channels/crypto) and are never shown or logged.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models, router, transaction
from django.db.models import ProtectedError, Q
from django.utils import timezone

from channels import registry
from channels.signals import channel_accounts_updated

# One member per line of channels.registry: ChannelKind.AMAZON == "amazon", labelled "Amazon".
ChannelKind = models.TextChoices(
    "ChannelKind", [(kind.upper(), (kind, label)) for kind, label in registry.kind_choices()], module=__name__
)


class BufferPolicy(models.TextChoices):
    # How much stock is held back from what a channel is told is available.
    NONE = "none", "None"
    FIXED = "fixed", "Fixed units"
    PERCENT = "percent", "Percent of available"
    DYNAMIC = "dynamic", "Dynamic (sales velocity)"


class BuyerCancelPolicy(models.TextChoices):
    # What happens when a buyer asks the channel to cancel an order.
    AUTO_ACCEPT = "auto_accept", "Accept automatically while nothing is picked"
    REVIEW = "review", "Hold the order and ask a person"


class ChannelAccountQuerySet(models.QuerySet):
    def update(self, **kwargs) -> int:
        # The accounts other apps read through config.kernel.accounts are cached in this process: forget them.
        try:
            return super().update(**kwargs)
        finally:
            channel_accounts_updated.send(sender=ChannelAccount)

    update.alters_data = True

    def delete(self) -> tuple[int, dict[str, int]]:
        # One account at a time through ChannelAccount.delete: an account with orders is refused, its
        # exception cases go with it (the orders' tables hold the account by id: no relation for Django).
        total, per_model = 0, {}
        with transaction.atomic(using=self.db):
            for account in self:
                n, counts = account.delete()
                total += n
                for label, count in counts.items():
                    per_model[label] = per_model.get(label, 0) + count
        return total, per_model

    delete.alters_data = True
    delete.queryset_only = True


# How many of an account's orders a refused delete names (the admin lists them).
PROTECTED_SHOWN = 100


class ChannelAccount(models.Model):
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    name = models.CharField(max_length=100, unique=True, help_text="e.g. amazon-us, shopify-main")
    api_base_url = models.URLField(help_text="Production endpoint or a sandbox URL")
    api_version = models.CharField(
        max_length=32, blank=True, help_text="Pinned API version where the channel has one (Shopify: 2026-10)"
    )
    # A Fernet token of a JSON object of strings (tokens, client secrets, webhook_secret,
    # webhook_secret_previous during a rotation). Written only by channel_account_set_credentials.
    credentials_encrypted = models.TextField(blank=True, default="", editable=False)
    credentials_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    marketplace_ids = models.JSONField(
        default=list, blank=True, help_text="Amazon marketplace ids; the Walmart/eBay marketplace id"
    )
    seller_id = models.CharField(max_length=128, blank=True, help_text="Amazon selling partner id, TikTok shop id, …")
    inventory_location_id = models.CharField(
        max_length=255, blank=True, help_text="The channel's location inventory is pushed to (Shopify Location GID)"
    )
    # The OMS computes ship-by for channels that send none (Shopify): handling time + cutoff.
    handling_time_days = models.PositiveSmallIntegerField(default=1)
    cutoff_time = models.TimeField(null=True, blank=True, help_text="Orders after this local time count as next day")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name for the cutoff time")
    sync_interval_seconds = models.PositiveIntegerField(default=60)
    eligible_locations = models.ManyToManyField(
        "inventory.Location",
        blank=True,
        related_name="channel_accounts",
        help_text="Nodes that may ship its orders",
    )
    buffer_policy = models.CharField(max_length=16, choices=BufferPolicy.choices, default=BufferPolicy.NONE)
    buffer_value = models.DecimalField(max_digits=7, decimal_places=2, default=Decimal("0"))
    buyer_cancel_policy = models.CharField(
        max_length=16, choices=BuyerCancelPolicy.choices, default=BuyerCancelPolicy.AUTO_ACCEPT
    )
    is_enabled = models.BooleanField(default=True)
    # Data protection (Amazon DPP): buyers' PII is purged this many days after an order is done
    # (delivered, cancelled or returned), unless the account is under a legal hold.
    pii_retention_days = models.PositiveSmallIntegerField(
        default=30, help_text="Days after delivery (or cancellation) before buyers' names and addresses are purged"
    )
    pii_legal_hold = models.BooleanField(
        default=False, help_text="A legal hold: keep buyers' PII past the retention period until it is lifted"
    )
    # Measured by the sync: now minus the newest source_updated_at seen.
    sync_lag_seconds = models.FloatField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    sync_cursor = models.DateTimeField(null=True, blank=True, help_text="Newest source_updated_at ingested")
    # The earliest time of the account's next inventory push (its channel's rate limit spaces them): claimed
    # with one guarded UPDATE by channels.outbox.inventory_push_slot_claim, so every worker shares the budget.
    inventory_push_next_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ChannelAccountQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(sync_interval_seconds__gte=10), name="channelaccount_sync_interval_min_10"
            ),
            models.CheckConstraint(condition=Q(buffer_value__gte=0), name="channelaccount_buffer_non_negative"),
            models.CheckConstraint(
                condition=~Q(buffer_policy="percent") | Q(buffer_value__lte=100),
                name="channelaccount_buffer_percent_le_100",
            ),
        ]
        indexes = [models.Index(fields=["kind", "is_enabled"], name="channelaccount_kind_enabled")]
        permissions = [("manage_credentials", "Can change channel credentials")]

    # Never include credentials: __str__/__repr__ end up in logs, tracebacks and admin pages.
    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<ChannelAccount {self.pk}: {self.name} ({self.kind})>"

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials_encrypted)

    # The orders and exception cases of the account (orders holds the account by id, with the foreign keys
    # channels' migration 0013 adds: orders are RESTRICTed, cases CASCADE).
    @property
    def orders(self) -> models.QuerySet:
        from orders.models import Order

        return Order.objects.filter(account_id=self.pk)

    @property
    def exception_cases(self) -> models.QuerySet:
        from orders.models import ExceptionCase

        return ExceptionCase.objects.filter(account_id=self.pk)

    def delete(self, using=None, keep_parents=False) -> tuple[int, dict[str, int]]:
        """Refused while orders name the account (ProtectedError, as Django's PROTECT did); its exception
        cases are deleted with it (what each case's own referrers do on delete included)."""
        if self.pk is not None:
            protected = list(self.orders.order_by("pk")[:PROTECTED_SHOWN])
            if protected:
                count = self.orders.count()
                raise ProtectedError(
                    f"Cannot delete channel account {self.name!r}: {count} order(s) were placed on it.",
                    set(protected),
                )
        with transaction.atomic(using=using or router.db_for_write(type(self), instance=self)):
            cases, case_counts = self.exception_cases.delete() if self.pk is not None else (0, {})
            total, counts = super().delete(using=using, keep_parents=keep_parents)
        for label, n in case_counts.items():
            counts[label] = counts.get(label, 0) + n
        return total + cases, counts


class ChannelAccountEvent(models.Model):
    """Audit trail for an account: credential changes and key rotations (key names only, never values)."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=48)
    actor = models.CharField(max_length=150)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="Before/after (credential key names only)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["account", "created_at"], name="channelaccountevent_acct_time")]
        constraints = [models.CheckConstraint(condition=~Q(actor=""), name="channelaccountevent_actor_required")]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor}"


class Listing(models.Model):
    """Maps a channel's SKU on one account to a Sku. sku null = unmapped (orders for it are held)."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="listings")
    sku = models.ForeignKey("inventory.Sku", null=True, blank=True, on_delete=models.PROTECT, related_name="listings")
    channel_sku = models.CharField(max_length=128)
    # ASIN, Walmart item id, Shopify variant GID, eBay offer id, TikTok product_id.
    external_listing_id = models.CharField(max_length=255, blank=True)
    # TikTok sku_id, Shopify inventoryItem GID.
    external_variant_id = models.CharField(max_length=255, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "channel_sku"], name="listing_unique_account_channel_sku"),
        ]
        indexes = [
            models.Index(fields=["sku", "account"], name="listing_sku_account"),
            models.Index(fields=["account"], name="listing_unmapped", condition=Q(sku__isnull=True)),
        ]

    def __str__(self) -> str:
        return self.channel_sku


class ChannelLocation(models.Model):
    """Maps a channel's location (a Shopify Location GID the buyer chose for pickup) to a Waybill
    Location. location null = unmapped: pickup orders for it are held until ops map it."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="channel_locations")
    external_id = models.CharField(max_length=255, help_text="The channel's location id")
    name = models.CharField(max_length=255, blank=True, help_text="The channel's name for it")
    location = models.ForeignKey(
        "inventory.Location", null=True, blank=True, on_delete=models.PROTECT, related_name="channel_locations"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "external_id"], name="channellocation_unique_account_external"),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.external_id} → {self.location or 'unmapped'}"


class InboundKind(models.TextChoices):
    ORDER = "order", "Order"
    WEBHOOK = "webhook", "Webhook"
    RETURN = "return", "Return"
    OTHER = "other", "Other"


class InboundStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"
    # A person gave up on a failed event: the sync stops re-reading its order.
    DISCARDED = "discarded", "Discarded"


class InboundEvent(models.Model):
    """One raw payload from a channel, stored before it is processed; replays hit the unique key."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="inbound_events")
    kind = models.CharField(max_length=16, choices=InboundKind.choices)
    # e.g. order id + source updated time, or X-Shopify-Webhook-Id.
    dedupe_key = models.CharField(max_length=255)
    external_id = models.CharField(max_length=128, blank=True, db_index=True, help_text="The channel's order id")
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    source_updated_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=InboundStatus.choices, default=InboundStatus.RECEIVED)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "dedupe_key"], name="inboundevent_unique_dedupe_key"),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="inboundevent_status_received"),
            models.Index(fields=["account", "external_id"], name="inboundevent_account_external"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.external_id or self.dedupe_key}"


class OutboxKind(models.TextChoices):
    ACKNOWLEDGE = "acknowledge", "Acknowledge"
    SHIP_CONFIRMATION = "ship_confirmation", "Ship confirmation"
    CANCELLATION = "cancellation", "Cancellation"
    INVENTORY = "inventory", "Inventory"
    PICKUP_READY = "pickup_ready", "Ready for pickup"
    REFUND = "refund", "Refund"
    RETURN_DECISION = "return_decision", "Return decision"
    OTHER = "other", "Other"


class OutboxStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    # Failed: will be retried at next_attempt_at. Parked: out of retries, needs a person.
    FAILED = "failed", "Failed"
    PARKED = "parked", "Parked"
    # A person gave up on a failed or parked message (channels.fixes.outbox_message_discard): never sent.
    DISCARDED = "discarded", "Discarded"


OUTBOX_DUE_STATUSES = (OutboxStatus.PENDING, OutboxStatus.FAILED)


class OutboxMessage(models.Model):
    """A push to a channel, written in the same transaction as the change it reports."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="outbox_messages")
    kind = models.CharField(max_length=32, choices=OutboxKind.choices)
    dedupe_key = models.CharField(max_length=255)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    # The channel's whole error answer (status, code, message, details), as it sent it.
    last_error_detail = models.JSONField(default=dict, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    response = models.JSONField(default=dict, blank=True)
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "kind", "dedupe_key"], name="outboxmessage_unique_dedupe_key"),
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False), name="outboxmessage_sent_has_time"
            ),
        ]
        indexes = [
            # The sender's queue: only rows still due are indexed, so the index stays small.
            models.Index(
                fields=["status", "next_attempt_at"],
                name="outboxmessage_due",
                condition=Q(status__in=["pending", "failed"]),
            ),
            models.Index(fields=["account", "created_at"], name="outboxmessage_account_created"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.dedupe_key}"


class SyncKind(models.TextChoices):
    POLL = "poll", "Poll"
    WEBHOOK = "webhook", "Webhook"
    BACKFILL = "backfill", "Backfill"
    RECONCILE = "reconcile", "Reconcile"


class SyncStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    PARTIAL = "partial", "Partial"


class SyncRun(models.Model):
    account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="sync_runs")
    kind = models.CharField(max_length=16, choices=SyncKind.choices)
    status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    cursor_from = models.DateTimeField(null=True, blank=True)
    cursor_to = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    orders_seen = models.PositiveIntegerField(default=0)
    orders_created = models.PositiveIntegerField(default=0)
    orders_updated = models.PositiveIntegerField(default=0)
    orders_failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    progress = models.JSONField(default=dict, blank=True, help_text="Resumable state: page token, offset, …")

    class Meta:
        indexes = [models.Index(fields=["account", "started_at"], name="syncrun_account_started")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="running") | Q(finished_at__isnull=False), name="syncrun_finished_has_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from start to finish; None while still running."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class ChannelAvailability(models.Model):
    """The quantity a channel account should advertise for a SKU, and what was last pushed.

    Written only by channels/availability.py. The table keeps the name it had when inventory held the model.
    """

    account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="availabilities")
    sku = models.ForeignKey("inventory.Sku", on_delete=models.CASCADE, related_name="channel_availabilities")
    quantity = models.IntegerField(default=0)
    last_pushed_quantity = models.IntegerField(null=True, blank=True)
    last_pushed_at = models.DateTimeField(null=True, blank=True)
    computed_at = models.DateTimeField(default=timezone.now)
    needs_push = models.BooleanField(default=False)

    class Meta:
        db_table = "inventory_channelavailability"
        verbose_name_plural = "channel availabilities"
        constraints = [
            models.UniqueConstraint(fields=["account", "sku"], name="channelavailability_unique_account_sku"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="channelavailability_quantity_non_negative"),
        ]
        indexes = [
            models.Index(
                fields=["account", "sku"], condition=Q(needs_push=True), name="channelavailability_needs_push"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku_id} on {self.account_id}: {self.quantity}"


# --- reconciliation (channels/reconcile.py): drift between Waybill and each channel --------------------


class ReconcileScope(models.TextChoices):
    ORDERS = "orders", "Orders"
    STOCK = "stock", "Advertised stock"


class ReconcileRun(models.Model):
    """One comparison of an account's orders or advertised stock with the channel's, as a whole."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="reconcile_runs")
    scope = models.CharField(max_length=16, choices=ReconcileScope.choices)
    # schedule | manual
    trigger = models.CharField(max_length=16, default="schedule")
    status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    window_from = models.DateTimeField(null=True, blank=True, help_text="Orders updated since (orders scope)")
    compared = models.PositiveIntegerField(default=0, help_text="Orders or SKUs compared")
    found = models.PositiveIntegerField(default=0)
    healed = models.PositiveIntegerField(default=0)
    unhealed = models.PositiveIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0, help_text="Calls made to the channel")
    error = models.TextField(blank=True)
    progress = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "scope", "started_at"], name="reconcilerun_acct_scope_start")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="running") | Q(finished_at__isnull=False), name="reconcilerun_finished_has_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_scope_display()} reconciliation {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class DriftKind(models.TextChoices):
    # Orders.
    SHIPPED_HERE_NOT_THERE = "shipped_here_not_there", "Shipped here, not at the channel"
    CANCELLED_HERE_NOT_THERE = "cancelled_here_not_there", "Cancelled here, not at the channel"
    CANCELLED_THERE = "cancelled_there", "Cancelled at the channel, live here"
    SHIPPED_THERE = "shipped_there", "Shipped at the channel, not here"
    MISSING_HERE = "missing_here", "At the channel, never ingested"
    MISSING_THERE = "missing_there", "Here, unknown to the channel"
    LINES_DISAGREE = "lines_disagree", "Line quantities disagree"
    # Advertised stock.
    OVER_ADVERTISED = "over_advertised", "Over-advertised (oversell risk)"
    UNDER_ADVERTISED = "under_advertised", "Under-advertised (lost sales)"


ORDER_DRIFT_KINDS = frozenset(
    {
        DriftKind.SHIPPED_HERE_NOT_THERE,
        DriftKind.CANCELLED_HERE_NOT_THERE,
        DriftKind.CANCELLED_THERE,
        DriftKind.SHIPPED_THERE,
        DriftKind.MISSING_HERE,
        DriftKind.MISSING_THERE,
        DriftKind.LINES_DISAGREE,
    }
)


class DriftStatus(models.TextChoices):
    # Found; the heal is under way (a run stopped before it finished).
    OPEN = "open", "Open"
    HEALED = "healed", "Healed"
    # Not healed automatically: an exception case asks a person.
    UNHEALED = "unhealed", "Needs a person"
    # Found consistent again without reconciliation healing it (the sync caught up, or a person fixed it).
    CLEARED = "cleared", "Cleared"


class Drift(models.Model):
    """One disagreement between Waybill and a channel: what it is about, their value, ours, what was done."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="drifts")
    run = models.ForeignKey(ReconcileRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="drifts")
    kind = models.CharField(max_length=32, choices=DriftKind.choices)
    # The channel's order id or the channel SKU.
    subject = models.CharField(max_length=255)
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    sku = models.ForeignKey("inventory.Sku", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    theirs = models.JSONField(default=dict, blank=True, help_text="What the channel says")
    ours = models.JSONField(default=dict, blank=True, help_text="What Waybill says")
    status = models.CharField(max_length=16, choices=DriftStatus.choices, default=DriftStatus.OPEN)
    action = models.TextField(blank=True, help_text="What reconciliation did about it")
    outbox_message = models.ForeignKey(
        OutboxMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    case = models.ForeignKey("orders.ExceptionCase", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    found_at = models.DateTimeField(default=timezone.now)
    healed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One unsettled drift per subject: a replayed or overlapping run finds the same row.
            models.UniqueConstraint(
                fields=["account", "kind", "subject"],
                condition=Q(status__in=["open", "unhealed"]),
                name="drift_one_unsettled_per_subject",
            ),
            models.CheckConstraint(
                condition=~Q(status="healed") | Q(healed_at__isnull=False), name="drift_healed_has_time"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "found_at"], name="drift_account_found"),
            models.Index(fields=["account", "status"], name="drift_account_status"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.subject}"
