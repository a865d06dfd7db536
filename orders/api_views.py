from __future__ import annotations

from rest_framework import viewsets

from orders import selectors
from orders.filters import OrderFilter
from orders.pagination import OrderCursorPagination
from orders.serializers import OrderDetailSerializer, OrderListSerializer


class OrderViewSet(viewsets.ReadOnlyModelViewSet):
    """Orders across every channel. Keyset-paged (`cursor`), filtered like the console's order list."""

    filterset_class = OrderFilter
    pagination_class = OrderCursorPagination

    def get_queryset(self):
        return selectors.order_detail() if self.action == "retrieve" else selectors.order_list()

    def get_serializer_class(self):
        return OrderDetailSerializer if self.action == "retrieve" else OrderListSerializer
