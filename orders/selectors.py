"""Order reads: querysets with their joins done, for the console and the API."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from orders.models import CaseStatus, ExceptionCase, Hold, Order, OrderEvent, OrderLine


def order_list() -> QuerySet[Order]:
    # One query per page: the account is joined, nothing else is fetched per row.
    return Order.objects.select_related("account").only(
        "id",
        "external_id",
        "external_reference",
        "status",
        "channel_status",
        "marketplace_fulfilled",
        "placed_at",
        "ship_by",
        "currency",
        "total_amount",
        "customer_name",
        "on_hold",
        "account__id",
        "account__name",
        "account__kind",
    )


def order_detail() -> QuerySet[Order]:
    return Order.objects.select_related("account", "ship_to", "pickup_location").prefetch_related(
        Prefetch("lines", queryset=OrderLine.objects.select_related("sku").order_by("id")),
        Prefetch("holds", queryset=Hold.objects.order_by("-placed_at")),
        Prefetch("events", queryset=OrderEvent.objects.order_by("-created_at", "-id")),
        Prefetch(
            "exception_cases",
            queryset=ExceptionCase.objects.select_related("owner").order_by("status", "-created_at"),
        ),
        # Fulfilment's reverse relations, by name only: orders never imports fulfillment.
        "routing_decisions",
        "shipments__location",
    )


def exception_case_queue() -> QuerySet[ExceptionCase]:
    return (
        ExceptionCase.objects.select_related("order", "owner", "account", "sku")
        .exclude(status=CaseStatus.RESOLVED)
        .order_by("due_at", "-created_at", "-id")
    )
