"""REST: snapshots and definitions (read-only; definitions are edited in the admin by ops managers)."""

from __future__ import annotations

import django_filters
from rest_framework import serializers, viewsets
from rest_framework.pagination import CursorPagination
from rest_framework.routers import DefaultRouter

from scorecards import selectors
from scorecards.models import MetricDefinition, MetricSnapshot, MetricState


class SnapshotPagination(CursorPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = ("-day", "id")


class DefinitionPagination(CursorPagination):
    page_size = 100
    ordering = ("channel_kind", "code", "-version", "id")


class SnapshotFilter(django_filters.FilterSet):
    account = django_filters.NumberFilter(field_name="account_id")
    code = django_filters.CharFilter()
    state = django_filters.ChoiceFilter(choices=MetricState.choices)
    day_from = django_filters.DateFilter(field_name="day", lookup_expr="gte")
    day_to = django_filters.DateFilter(field_name="day", lookup_expr="lte")

    class Meta:
        model = MetricSnapshot
        fields = ["account", "code", "state", "day_from", "day_to"]


class DefinitionFilter(django_filters.FilterSet):
    class Meta:
        model = MetricDefinition
        fields = ["channel_kind", "code", "is_active", "formula"]


class MetricSnapshotSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True)
    version = serializers.IntegerField(source="definition.version", read_only=True)

    class Meta:
        model = MetricSnapshot
        fields = [
            "id",
            "account",
            "account_name",
            "code",
            "definition",
            "version",
            "day",
            "window_start",
            "window_end",
            "numerator",
            "denominator",
            "value",
            "state",
            "computed_at",
        ]


class MetricDefinitionSerializer(serializers.ModelSerializer):
    warning_line = serializers.DecimalField(max_digits=7, decimal_places=4, read_only=True)

    class Meta:
        model = MetricDefinition
        fields = [
            "id",
            "channel_kind",
            "code",
            "name",
            "version",
            "formula",
            "numerator_description",
            "denominator_description",
            "window_days",
            "comparison",
            "threshold",
            "warning_threshold",
            "warning_line",
            "seller_threshold",
            "marketplace_metric",
            "divergence_tolerance",
            "is_active",
            "effective_from",
            "notes",
        ]


class MetricSnapshotViewSet(viewsets.ReadOnlyModelViewSet):
    """Daily metric snapshots per account (value null and state no_data when the window had no orders)."""

    serializer_class = MetricSnapshotSerializer
    filterset_class = SnapshotFilter
    pagination_class = SnapshotPagination

    def get_queryset(self):
        return selectors.snapshot_list()


class MetricDefinitionViewSet(viewsets.ReadOnlyModelViewSet):
    """Every version of every channel's metric definition."""

    serializer_class = MetricDefinitionSerializer
    filterset_class = DefinitionFilter
    pagination_class = DefinitionPagination

    def get_queryset(self):
        return MetricDefinition.objects.all()


router = DefaultRouter()
router.register("snapshots", MetricSnapshotViewSet, basename="metric-snapshot")
router.register("definitions", MetricDefinitionViewSet, basename="metric-definition")
urlpatterns = router.urls
