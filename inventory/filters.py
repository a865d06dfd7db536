"""One FilterSet per list, shared by the console grid and the REST endpoint."""

from __future__ import annotations

import django_filters
from django.db.models import F, Q
from drf_spectacular.utils import extend_schema_field

from inventory.models import (
    InboundShipment,
    InboundStatus,
    Location,
    LocationKind,
    MovementReason,
    StockLevel,
    StockMovement,
)

AVAILABILITY_CHOICES = [
    ("available", "Available to promise"),
    ("out", "Nothing to promise"),
    ("reserved", "Has reservations"),
    ("inbound", "Has inbound"),
    ("non_sellable", "Has damaged / quarantined / refurbish / receiving units"),
]


@extend_schema_field({"type": "string", "description": "Location code; repeat the parameter for several"})
class LocationCodeFilter(django_filters.ModelMultipleChoiceFilter):
    """Locations by code (?location=DAL&location=RNO)."""


class StockLevelFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_search", label="SKU")
    sku = django_filters.CharFilter(field_name="sku__code", label="SKU code")
    location = LocationCodeFilter(
        field_name="location__code", to_field_name="code", queryset=Location.objects.order_by("code"), label="Location"
    )
    location_kind = django_filters.ChoiceFilter(field_name="location__kind", choices=LocationKind.choices)
    availability = django_filters.ChoiceFilter(choices=AVAILABILITY_CHOICES, method="filter_availability")

    class Meta:
        model = StockLevel
        fields = ["q", "sku", "location", "location_kind", "availability"]

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(sku__code__istartswith=value) | Q(sku__barcode=value) | Q(sku__name__icontains=value))

    def filter_availability(self, queryset, name, value):
        atp = F("on_hand") - F("reserved") - F("safety_stock")
        if value == "available":
            return queryset.alias(atp_raw=atp).filter(atp_raw__gt=0)
        if value == "out":
            return queryset.alias(atp_raw=atp).filter(atp_raw__lte=0)
        if value == "reserved":
            return queryset.filter(reserved__gt=0)
        if value == "inbound":
            return queryset.filter(inbound_units__gt=0) if "inbound_units" in queryset.query.annotations else queryset
        if value == "non_sellable":
            return queryset.filter(Q(damaged__gt=0) | Q(quarantine__gt=0) | Q(receiving__gt=0) | Q(refurbish__gt=0))
        return queryset


class StockMovementFilter(django_filters.FilterSet):
    sku = django_filters.CharFilter(field_name="sku__code")
    location = django_filters.CharFilter(field_name="location__code")
    reason = django_filters.MultipleChoiceFilter(choices=MovementReason.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = StockMovement
        fields = ["sku", "location", "reason", "created_after"]


class InboundShipmentFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=InboundStatus.choices)
    location = django_filters.CharFilter(field_name="location__code")
    reference = django_filters.CharFilter(field_name="reference")

    class Meta:
        model = InboundShipment
        fields = ["status", "location", "reference"]
