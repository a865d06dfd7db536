"""Fulfillment admin. Routing decisions and tracking events are append-only; shipment statuses
move through fulfillment services."""

from __future__ import annotations

from django.contrib import admin

from orders.pagination import BigTableAdminMixin

from .models import Carrier, NodeCapacityDay, RoutingDecision, Shipment, ShipmentLine, TrackingEvent


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Carrier)
class CarrierAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "is_active", "tracking_url_template")
    list_filter = ("is_active",)
    search_fields = ("code", "name")
    ordering = ("code",)


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "order",
        "outcome",
        "strategy",
        "config_version",
        "actor",
        "duration_ms",
        "created_at",
    )
    list_filter = ("outcome",)
    list_select_related = ("order",)
    search_fields = ("=order__external_id",)
    raw_id_fields = ("order",)
    ordering = ("-id",)


class ShipmentLineInline(admin.TabularInline):
    model = ShipmentLine
    extra = 0
    raw_id_fields = ("order_line", "reservation")
    fields = ("order_line", "reservation", "quantity", "quantity_shipped", "quantity_short")
    readonly_fields = ("quantity_shipped", "quantity_short")


class TrackingEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = TrackingEvent
    extra = 0
    fields = ("occurred_at", "status", "description", "location_text", "source")
    ordering = ("occurred_at",)


@admin.register(Shipment)
class ShipmentAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "order",
        "location",
        "kind",
        "status",
        "carrier",
        "tracking_number",
        "shipped_at",
        "promised_delivery_at",
        "delivered_at",
    )
    list_filter = ("status", "kind", "location", "carrier")
    list_select_related = ("order", "location", "carrier")
    search_fields = ("=tracking_number", "=external_reference", "=order__external_id")
    raw_id_fields = ("order",)
    autocomplete_fields = ("location", "carrier")
    readonly_fields = ("status", "created_at", "updated_at")
    ordering = ("-id",)
    inlines = (ShipmentLineInline, TrackingEventInline)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ShipmentLine)
class ShipmentLineAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = ("id", "shipment", "order_line", "quantity", "quantity_shipped", "quantity_short")
    list_select_related = ("shipment", "order_line")
    search_fields = ("=shipment__tracking_number", "=order_line__order__external_id")
    raw_id_fields = ("shipment", "order_line", "reservation")
    readonly_fields = ("quantity_shipped", "quantity_short")
    ordering = ("-id",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TrackingEvent)
class TrackingEventAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = ("id", "shipment", "status", "occurred_at", "received_at", "source", "location_text")
    list_filter = ("status", "carrier")
    list_select_related = ("shipment",)
    search_fields = ("=shipment__tracking_number", "=dedupe_key")
    raw_id_fields = ("shipment", "carrier")
    ordering = ("-id",)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(NodeCapacityDay)
class NodeCapacityDayAdmin(admin.ModelAdmin):
    list_display = ("location", "day", "capacity_used")
    list_filter = ("location",)
    list_select_related = ("location",)
    autocomplete_fields = ("location",)
    date_hierarchy = "day"
    ordering = ("-day", "location")
