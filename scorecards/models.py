"""Scorecards: versioned seller-metric definitions and computed snapshots per channel account.

Thresholds and windows live in MetricDefinition rows, never in code.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

# The marketplace registry (data only): scorecards read channels, they never write there.
from channels import registry


class Comparison(models.TextChoices):
    LTE = "lte", "At most"
    GTE = "gte", "At least"


class MetricState(models.TextChoices):
    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    BREACH = "breach", "Breach"
    NO_DATA = "no_data", "No data"


class MetricDefinition(models.Model):
    channel_kind = models.CharField(max_length=16, choices=registry.kind_choices())
    code = models.CharField(max_length=64, help_text='e.g. "late_shipment_rate"')
    name = models.CharField(max_length=255)
    version = models.PositiveIntegerField(default=1)
    numerator_description = models.TextField(blank=True)
    denominator_description = models.TextField(blank=True)
    window_days = models.PositiveIntegerField()
    comparison = models.CharField(max_length=8, choices=Comparison.choices, default=Comparison.LTE)
    threshold = models.DecimalField(max_digits=7, decimal_places=4, help_text="A ratio: 0.04 = 4%")
    warning_threshold = models.DecimalField(
        max_digits=7, decimal_places=4, null=True, blank=True, help_text="Early warning, inside the penalty"
    )
    is_active = models.BooleanField(default=True)
    effective_from = models.DateField()
    notes = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel_kind", "code", "version"], name="metricdefinition_unique_version"),
            models.CheckConstraint(condition=Q(window_days__gt=0), name="metricdefinition_window_positive"),
            models.CheckConstraint(condition=Q(threshold__gte=0), name="metricdefinition_threshold_non_negative"),
            # The warning line sits inside the penalty: below it for "at most", above it for "at least".
            models.CheckConstraint(
                condition=Q(warning_threshold__isnull=True)
                | Q(comparison="lte", warning_threshold__lte=F("threshold"))
                | Q(comparison="gte", warning_threshold__gte=F("threshold")),
                name="metricdefinition_warning_inside_threshold",
            ),
        ]
        indexes = [models.Index(fields=["channel_kind", "is_active"], name="metricdefinition_kind_active")]

    def __str__(self) -> str:
        return f"{self.channel_kind}:{self.code} v{self.version}"

    def state_for(self, value: Decimal | None) -> str:
        """The MetricState for a computed value (None when the denominator was 0)."""
        if value is None:
            return MetricState.NO_DATA
        if self.comparison == Comparison.LTE:
            if value > self.threshold:
                return MetricState.BREACH
            if self.warning_threshold is not None and value > self.warning_threshold:
                return MetricState.WARNING
        else:
            if value < self.threshold:
                return MetricState.BREACH
            if self.warning_threshold is not None and value < self.warning_threshold:
                return MetricState.WARNING
        return MetricState.OK


class MetricSnapshot(models.Model):
    definition = models.ForeignKey(MetricDefinition, on_delete=models.PROTECT, related_name="snapshots")
    account = models.ForeignKey("channels.ChannelAccount", on_delete=models.CASCADE, related_name="metric_snapshots")
    computed_at = models.DateTimeField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    numerator = models.IntegerField(default=0)
    denominator = models.IntegerField(default=0)
    value = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    state = models.CharField(max_length=16, choices=MetricState.choices, default=MetricState.NO_DATA)

    class Meta:
        constraints = [
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
        ]

    def __str__(self) -> str:
        return f"{self.definition} = {self.value} ({self.state})"
