"""Scorecards: versioned seller-metric definitions, computed snapshots per account and day, the
marketplaces' own Account Health numbers beside ours.

Thresholds, warning lines and windows live in MetricDefinition rows, never in code. The SQL each
``formula`` names is in scorecards/compute.py; the reading taken of a channel's rule is written in the
definition's ``notes``.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

# The marketplace registry (data only): scorecards read channels, they never write there.
from channels import registry

# The default early-warning line: this share of the allowed failure margin inside the penalty
# (an LSR threshold of 4% warns above 3.4%; a 95% valid-tracking threshold warns below 95.75%).
DEFAULT_WARNING_SHARE = Decimal("0.15")
MAX_WINDOW_DAYS = 366


class Comparison(models.TextChoices):
    """How the value must stand against the threshold to be in good standing."""

    LT = "lt", "Below"
    LTE = "lte", "At most"
    GT = "gt", "Above"
    GTE = "gte", "At least"


LOWER_IS_BETTER = (Comparison.LT, Comparison.LTE)


class Formula(models.TextChoices):
    """The set-based computations scorecards/compute.py knows; each definition names one."""

    LATE_CONFIRMATION = "late_confirmation", "Ship confirmation accepted after the ship-by (by ship-by day)"
    ON_TIME_CONFIRMATION = "on_time_confirmation", "Ship confirmation accepted by the ship-by (by ship-by day)"
    SELLER_CANCEL = "seller_cancel", "Seller-initiated cancellations (by order day)"
    VALID_TRACKING = "valid_tracking", "Ship-confirmed orders with a carrier scan (by confirmation day)"
    ON_TIME_DELIVERY = "on_time_delivery", "Delivered by the promise, orders with tracking (by promise day)"
    ON_TIME_DELIVERY_ORDERS = "on_time_delivery_orders", "Delivered by the estimated date (by promise day)"
    LATE_DISPATCH = "late_dispatch", "Not carrier-scanned by the ship-by (by ship-by day)"
    LATE_SCAN = "late_scan", "First carrier scan after the ship-by (by ship-by day)"
    TRACKING_UPLOADED = "tracking_uploaded", "Tracking uploaded by the ship-by (by ship-by day)"
    SELLER_REFUND = "seller_refund", "Seller-responsible refunds and returns (by order day)"
    REFUND = "refund", "Orders with a refund (by order day)"
    ORDER_DEFECT_REPORT = "order_defect_report", "Defects from the marketplace's report ÷ our orders (by order day)"


# Formulas whose numerator grows when an order not yet shipped ships late: the at-risk projection and
# the board's scorecard impact use them. "higher" says whether lateness raises the value.
LATENESS_FORMULAS: dict[str, bool] = {
    Formula.LATE_CONFIRMATION: True,
    Formula.LATE_SCAN: True,
    Formula.LATE_DISPATCH: True,
    Formula.ON_TIME_CONFIRMATION: False,
    Formula.TRACKING_UPLOADED: False,
}


class MetricState(models.TextChoices):
    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    BREACH = "breach", "Breach"
    NO_DATA = "no_data", "No data"


def default_warning(threshold: Decimal, comparison: str) -> Decimal:
    """The warning line DEFAULT_WARNING_SHARE inside the penalty, on the failure side's margin."""
    if comparison in LOWER_IS_BETTER:
        return (threshold * (1 - DEFAULT_WARNING_SHARE)).quantize(Decimal("0.0001"))
    return (threshold + (1 - threshold) * DEFAULT_WARNING_SHARE).quantize(Decimal("0.0001"))


class MetricDefinition(models.Model):
    channel_kind = models.CharField(max_length=16, choices=registry.kind_choices())
    code = models.CharField(max_length=64, help_text='e.g. "late_shipment_rate"')
    name = models.CharField(max_length=255)
    version = models.PositiveIntegerField(default=1)
    formula = models.CharField(max_length=32, choices=Formula.choices, default=Formula.LATE_CONFIRMATION)
    numerator_description = models.TextField(blank=True)
    denominator_description = models.TextField(blank=True)
    window_days = models.PositiveIntegerField()
    comparison = models.CharField(max_length=8, choices=Comparison.choices, default=Comparison.LTE)
    threshold = models.DecimalField(max_digits=7, decimal_places=4, help_text="A ratio: 0.04 = 4%")
    warning_threshold = models.DecimalField(
        max_digits=7,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Early warning inside the penalty; empty = 15% of the margin inside the threshold",
    )
    seller_threshold = models.DecimalField(
        max_digits=7,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="The seller's own line (e.g. LSR above 2.5%); crossing it is a warning too",
    )
    # The Amazon Account Health report's metric this one is compared with (lateShipmentRate, …).
    marketplace_metric = models.CharField(max_length=64, blank=True)
    divergence_tolerance = models.DecimalField(
        max_digits=7,
        decimal_places=4,
        default=Decimal("0.0050"),
        help_text="Ours and the marketplace's may differ by this much (a ratio) before a case opens",
    )
    is_active = models.BooleanField(default=True)
    effective_from = models.DateField(help_text="The first day this version is in force")
    notes = models.TextField(blank=True, help_text="The reading taken of the channel's rule")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel_kind", "code", "version"], name="metricdefinition_unique_version"),
            models.CheckConstraint(condition=Q(window_days__gt=0), name="metricdefinition_window_positive"),
            models.CheckConstraint(
                condition=Q(window_days__lte=MAX_WINDOW_DAYS), name="metricdefinition_window_at_most_a_year"
            ),
            models.CheckConstraint(
                condition=Q(threshold__gte=0, threshold__lte=1), name="metricdefinition_threshold_is_a_ratio"
            ),
            # The warning lines sit inside the penalty: below it for lower-is-better, above it otherwise.
            models.CheckConstraint(
                condition=Q(warning_threshold__isnull=True)
                | Q(comparison__in=["lt", "lte"], warning_threshold__lte=F("threshold"), warning_threshold__gte=0)
                | Q(comparison__in=["gt", "gte"], warning_threshold__gte=F("threshold"), warning_threshold__lte=1),
                name="metricdefinition_warning_inside_threshold",
            ),
            models.CheckConstraint(
                condition=Q(seller_threshold__isnull=True)
                | Q(comparison__in=["lt", "lte"], seller_threshold__lte=F("threshold"), seller_threshold__gte=0)
                | Q(comparison__in=["gt", "gte"], seller_threshold__gte=F("threshold"), seller_threshold__lte=1),
                name="metricdefinition_seller_line_inside_threshold",
            ),
        ]
        indexes = [models.Index(fields=["channel_kind", "is_active"], name="metricdefinition_kind_active")]

    def __str__(self) -> str:
        return f"{self.channel_kind}:{self.code} v{self.version}"

    def save(self, *args, **kwargs) -> None:
        if self.warning_threshold is None and self.threshold is not None:
            self.warning_threshold = default_warning(Decimal(self.threshold), self.comparison)
        super().save(*args, **kwargs)

    @property
    def lower_is_better(self) -> bool:
        return self.comparison in LOWER_IS_BETTER

    @property
    def warning_line(self) -> Decimal:
        if self.warning_threshold is not None:
            return self.warning_threshold
        return default_warning(self.threshold, self.comparison)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.window_days is not None and not 0 < self.window_days <= MAX_WINDOW_DAYS:
            errors["window_days"] = f"a window is 1 to {MAX_WINDOW_DAYS} days; {self.window_days} is impossible"
        if self.threshold is not None and not Decimal(0) <= self.threshold <= Decimal(1):
            errors["threshold"] = f"a threshold is a ratio between 0 and 1 (0.04 = 4%); {self.threshold} is impossible"
        elif self.threshold is not None:
            for field in ("warning_threshold", "seller_threshold"):
                line = getattr(self, field)
                if line is None:
                    continue
                if not Decimal(0) <= line <= Decimal(1):
                    errors[field] = f"a line is a ratio between 0 and 1; {line} is impossible"
                elif self.lower_is_better and line > self.threshold:
                    errors[field] = f"for a lower-is-better metric the line must be at or below {self.threshold}"
                elif not self.lower_is_better and line < self.threshold:
                    errors[field] = f"for a higher-is-better metric the line must be at or above {self.threshold}"
        if self.formula == Formula.ORDER_DEFECT_REPORT and self.channel_kind and self.channel_kind != "amazon":
            errors["formula"] = "only Amazon reports order defects to us"
        if errors:
            raise ValidationError(errors)

    def state_for(self, value: Decimal | None) -> str:
        """The MetricState for a value (None when the denominator was 0): the same rule as the SQL."""
        if value is None:
            return MetricState.NO_DATA
        lines = [self.warning_line] + ([self.seller_threshold] if self.seller_threshold is not None else [])
        if self.comparison == Comparison.LT:
            if value >= self.threshold:
                return MetricState.BREACH
        elif self.comparison == Comparison.LTE:
            if value > self.threshold:
                return MetricState.BREACH
        elif self.comparison == Comparison.GT:
            if value <= self.threshold:
                return MetricState.BREACH
        elif value < self.threshold:
            return MetricState.BREACH
        if self.lower_is_better and any(value > line for line in lines):
            return MetricState.WARNING
        if not self.lower_is_better and any(value < line for line in lines):
            return MetricState.WARNING
        return MetricState.OK


class MetricSnapshot(models.Model):
    """One account's metric on one day (UTC): the window ending that day, with the version in force."""

    definition = models.ForeignKey(MetricDefinition, on_delete=models.PROTECT, related_name="snapshots")
    account = models.ForeignKey("channels.ChannelAccount", on_delete=models.CASCADE, related_name="metric_snapshots")
    code = models.CharField(max_length=64)
    day = models.DateField()
    computed_at = models.DateTimeField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    numerator = models.IntegerField(default=0)
    denominator = models.IntegerField(default=0)
    value = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    state = models.CharField(max_length=16, choices=MetricState.choices, default=MetricState.NO_DATA)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "code", "day"], name="metricsnapshot_one_per_account_code_day"),
            models.CheckConstraint(
                condition=Q(numerator__gte=0, denominator__gte=0), name="metricsnapshot_counts_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(window_end__gte=F("window_start")), name="metricsnapshot_window_ordered"
            ),
            models.CheckConstraint(
                condition=Q(denominator=0, value__isnull=True) | (~Q(denominator=0) & Q(value__isnull=False)),
                name="metricsnapshot_value_null_iff_no_denominator",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "definition", "computed_at"], name="metricsnapshot_acct_def_time"),
            models.Index(fields=["day", "state"], name="metricsnapshot_day_state"),
        ]

    def __str__(self) -> str:
        return f"{self.definition} {self.day} = {self.value} ({self.state})"


class ReportStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class AccountHealthReport(models.Model):
    """One Account Health report fetched from the marketplace (Amazon GET_V2_SELLER_PERFORMANCE_REPORT)."""

    account = models.ForeignKey("channels.ChannelAccount", on_delete=models.CASCADE, related_name="+")
    report_type = models.CharField(max_length=64)
    report_id = models.CharField(max_length=128, blank=True)
    status = models.CharField(max_length=16, choices=ReportStatus.choices, default=ReportStatus.REQUESTED)
    requested_at = models.DateTimeField()
    fetched_at = models.DateTimeField(null=True, blank=True)
    document = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-requested_at"], name="healthreport_account_time")]

    def __str__(self) -> str:
        return f"{self.report_type} {self.report_id} ({self.status})"


class MarketplaceMetric(models.Model):
    """One metric as the marketplace reports it, beside the value Waybill computed for the same window."""

    report = models.ForeignKey(AccountHealthReport, on_delete=models.CASCADE, related_name="metrics")
    account = models.ForeignKey("channels.ChannelAccount", on_delete=models.CASCADE, related_name="+")
    marketplace_id = models.CharField(max_length=32)
    metric = models.CharField(max_length=64, help_text="The report's name: lateShipmentRate, orderDefectRate.mfn…")
    reporting_from = models.DateTimeField()
    reporting_to = models.DateTimeField()
    numerator = models.IntegerField(null=True, blank=True)
    denominator = models.IntegerField(null=True, blank=True)
    rate = models.DecimalField(max_digits=9, decimal_places=6)
    target_value = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    target_condition = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=8, blank=True)
    # ODR's defect parts, known only to the marketplace.
    details = models.JSONField(default=dict, blank=True)
    ours_numerator = models.IntegerField(null=True, blank=True)
    ours_denominator = models.IntegerField(null=True, blank=True)
    ours_rate = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    diverges = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["account", "metric", "-reporting_to"], name="marketplacemetric_acct_metric"),
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.rate}"


class BackfillStatus(models.TextChoices):
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class BackfillRun(models.Model):
    """A recompute of history, day range by day range, with its progress for the console."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    started_by = models.CharField(max_length=150)
    status = models.CharField(max_length=16, choices=BackfillStatus.choices, default=BackfillStatus.RUNNING)
    first_day = models.DateField()
    last_day = models.DateField()
    days_total = models.PositiveIntegerField()
    days_done = models.PositiveIntegerField(default=0)
    snapshots = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(days_done__lte=F("days_total")), name="backfillrun_done_le_total"),
            models.CheckConstraint(condition=~Q(started_by=""), name="backfillrun_started_by_required"),
        ]

    def __str__(self) -> str:
        return f"Backfill {self.first_day}..{self.last_day} ({self.status})"

    @property
    def percent(self) -> int:
        return int(100 * self.days_done / self.days_total) if self.days_total else 100


class OrderFact(models.Model):
    """What the metrics need of one seller-fulfilled order, kept current by scorecards.compute.facts_refresh
    (incrementally, from the rows changed since the last refresh). The metrics are aggregated from these rows;
    every time comparison with "now" happens at aggregation, so a fact is the same whatever the day."""

    order = models.OneToOneField("orders.Order", on_delete=models.CASCADE, primary_key=True, related_name="+")
    account = models.ForeignKey("channels.ChannelAccount", on_delete=models.CASCADE, related_name="+")
    placed_at = models.DateTimeField()
    ship_by = models.DateTimeField(null=True)
    promise = models.DateTimeField(null=True)
    status = models.CharField(max_length=32)
    cancel_initiator = models.CharField(max_length=16, blank=True)
    confirmed_at = models.DateTimeField(null=True, help_text="The channel accepted the first ship confirmation")
    scan_at = models.DateTimeField(null=True, help_text="The first carrier scan")
    has_tracking = models.BooleanField(default=False)
    delivered_at = models.DateTimeField(null=True)
    refunded = models.BooleanField(default=False)
    seller_refunded = models.BooleanField(default=False)
    # The UTC days each formula groups by, stored so the planner knows how few there are.
    pday = models.DateField(help_text="Placed")
    sday = models.DateField(null=True, help_text="Ship-by")
    cday = models.DateField(null=True, help_text="Confirmation accepted")
    dday = models.DateField(null=True, help_text="Promised delivery")
    refreshed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["account", "placed_at"], name="orderfact_account_placed")]

    def __str__(self) -> str:
        return f"facts of order {self.order_id}"


class FactsWatermark(models.Model):
    """Where the incremental facts refresh resumes: rows changed at or after ``changed_since`` are re-read."""

    name = models.CharField(max_length=32, unique=True, default="order_facts")
    changed_since = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} since {self.changed_since}"
