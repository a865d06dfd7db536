"""One FilterSet per list, shared by the console and the node API."""

from __future__ import annotations

import django_filters
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from fulfillment.models import Shipment, ShipmentKind, ShipmentStatus
from fulfillment.serializers import NODE_EVENT_KINDS
from fulfillment.status import PRE_SHIP
from orders.models import OrderEvent


class ShipmentFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=ShipmentStatus.choices)
    kind = django_filters.ChoiceFilter(choices=ShipmentKind.choices)
    node = django_filters.CharFilter(field_name="location__code", label="Node code")
    order = django_filters.CharFilter(field_name="order__external_id", label="Order id")
    tracking_number = django_filters.CharFilter()
    late = django_filters.BooleanFilter(method="filter_late", label="Past ship-by, not shipped")
    changed_since = django_filters.IsoDateTimeFilter(
        method="filter_changed_since", label="Changed at or after (the shipment, or an event for the node)"
    )

    class Meta:
        model = Shipment
        fields = ["status", "kind", "node", "order", "tracking_number", "late", "changed_since"]

    def filter_changed_since(self, queryset, name, value):
        node_event = OrderEvent.objects.filter(
            order_id=OuterRef("order_id"), kind__in=NODE_EVENT_KINDS, created_at__gte=value
        )
        return queryset.filter(Q(updated_at__gte=value) | Exists(node_event))

    def filter_late(self, queryset, name, value):
        late = {"status__in": PRE_SHIP, "ship_by__lt": timezone.now()}
        return queryset.filter(**late) if value else queryset.exclude(**late)
