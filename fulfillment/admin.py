"""Fulfillment admin. Routing decisions and tracking events are append-only; shipment statuses
move through fulfillment services."""

from __future__ import annotations

from django.contrib import admin, messages

from config.kernel.admin import BigTableAdminMixin

from .models import (
    Carrier,
    ChannelNodePolicy,
    IdempotencyRecord,
    NodeApiToken,
    NodeCapacityDay,
    RoutingConfig,
    RoutingDecision,
    Shipment,
    ShipmentLine,
    TrackingEvent,
)


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


class ChannelNodePolicyInline(admin.TabularInline):
    model = ChannelNodePolicy
    extra = 0
    fields = ("channel_kind", "account_id", "location", "note")
    autocomplete_fields = ("location",)


@admin.register(RoutingConfig)
class RoutingConfigAdmin(admin.ModelAdmin):
    """Order-routing rules. Saving bumps the version; the next routing decision uses it."""

    list_display = ("name", "is_active", "version", "max_shipments", "allow_late", "ship_partial", "updated_at")
    readonly_fields = ("version", "updated_at", "updated_by")
    fieldsets = (
        (None, {"fields": ("name", "is_active", "version", "updated_at", "updated_by")}),
        (
            "Order routing",
            {
                "fields": (
                    "max_shipments",
                    "allow_line_split",
                    "ship_partial",
                    "allow_late",
                    "tie_breakers",
                    "distance_band_km",
                )
            },
        ),
        (
            "Nodes and parcels",
            {"fields": ("short_pick_adjusts_stock", "pickup_deadline_hours", "no_scan_hours", "transit_days")},
        ),
    )
    inlines = (ChannelNodePolicyInline,)

    def save_related(self, request, form, formsets, change):
        from fulfillment.services import routing_config_bump

        super().save_related(request, form, formsets, change)
        if change and (form.has_changed() or any(fs.has_changed() for fs in formsets)):
            config = routing_config_bump(config=form.instance, actor=request.user)
            messages.info(request, f"Routing rules are now {config.version_label}; the next decision uses them.")


@admin.register(NodeApiToken)
class NodeApiTokenAdmin(admin.ModelAdmin):
    """Tokens for a node's WMS/3PL/TMS. The key is shown once, when the token is created."""

    list_display = ("name", "location", "key_prefix", "created_at", "created_by", "last_used_at", "revoked_at")
    list_filter = ("location",)
    list_select_related = ("location",)
    fields = ("location", "name", "key_prefix", "created_at", "created_by", "last_used_at", "revoked_at")
    readonly_fields = ("key_prefix", "created_at", "created_by", "last_used_at")
    autocomplete_fields = ("location",)

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "location") if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        from fulfillment.services import node_token_create

        token, key = node_token_create(location=obj.location_id, name=obj.name, actor=request.user)
        obj.pk = token.pk
        obj.__dict__.update(token.__dict__)
        messages.warning(request, f"Key for {token.name}: {key} (shown once; send it as 'Authorization: Node {key}')")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "scope", "key", "method", "path", "response_status", "created_at")
    search_fields = ("=key",)
    ordering = ("-id",)
