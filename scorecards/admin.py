"""Scorecards admin. Definitions are configuration; snapshots are computed and read-only."""

from __future__ import annotations

from django.contrib import admin

from config.kernel.admin import BigTableAdminMixin

from .models import MetricDefinition, MetricSnapshot


@admin.register(MetricDefinition)
class MetricDefinitionAdmin(admin.ModelAdmin):
    list_display = (
        "channel_kind",
        "code",
        "version",
        "name",
        "window_days",
        "comparison",
        "formula",
        "threshold",
        "warning_threshold",
        "seller_threshold",
        "is_active",
        "effective_from",
    )
    list_filter = ("channel_kind", "is_active", "comparison")
    search_fields = ("code", "name")
    ordering = ("channel_kind", "code", "-version")
    # A change of rule is a new version from its effective date ("Save as new" with the next version
    # number), so the snapshots of the days before keep the version that was in force.
    save_as = True


@admin.register(MetricSnapshot)
class MetricSnapshotAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = ("day", "account", "definition", "numerator", "denominator", "value", "state", "computed_at")
    list_filter = ("state", "definition__channel_kind", "code")
    list_select_related = ("account", "definition")
    raw_id_fields = ("account", "definition")
    ordering = ("-id",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
