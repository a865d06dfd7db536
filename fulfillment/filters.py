"""One FilterSet per list, shared by the console and the node API."""

from __future__ import annotations

import django_filters
from django.utils import timezone

from fulfillment.models import Shipment, ShipmentKind, ShipmentStatus
from fulfillment.status import PRE_SHIP


class ShipmentFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=ShipmentStatus.choices)
    kind = django_filters.ChoiceFilter(choices=ShipmentKind.choices)
    node = django_filters.CharFilter(field_name="location__code", label="Node code")
    order = django_filters.CharFilter(field_name="order__external_id", label="Order id")
    tracking_number = django_filters.CharFilter()
    late = django_filters.BooleanFilter(method="filter_late", label="Past ship-by, not shipped")

    class Meta:
        model = Shipment
        fields = ["status", "kind", "node", "order", "tracking_number", "late"]

    def filter_late(self, queryset, name, value):
        late = {"status__in": PRE_SHIP, "ship_by__lt": timezone.now()}
        return queryset.filter(**late) if value else queryset.exclude(**late)
