"""Inventory admin. Quantities are read-only here: stock changes go through inventory services
so the ledger and reservations stay in step with StockLevel."""

from __future__ import annotations

from django.contrib import admin

from config.kernel.admin import BigTableAdminMixin

from .models import (
    InboundLine,
    InboundShipment,
    Location,
    Reservation,
    Sku,
    StockLevel,
    StockMovement,
)


@admin.register(Sku)
class SkuAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "barcode", "is_active", "allow_backorder", "is_preorder", "safety_stock")
    list_filter = ("is_active", "allow_backorder", "is_preorder")
    search_fields = ("code", "name", "=barcode")
    ordering = ("code",)
    readonly_fields = ("created_at",)


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "kind",
        "is_active",
        "can_ship",
        "can_pickup",
        "ships_from_store",
        "cutoff_time",
        "daily_capacity",
        "priority",
    )
    list_filter = ("kind", "is_active", "can_ship", "can_pickup", "ships_from_store", "country_code")
    search_fields = ("code", "name", "city", "postal_code")
    ordering = ("priority", "code")
    fieldsets = (
        (None, {"fields": ("code", "name", "kind", "is_active", "priority")}),
        (
            "Address",
            {"fields": ("line1", "city", "region", "postal_code", "country_code", "latitude", "longitude")},
        ),
        (
            "Fulfilment",
            {
                "fields": (
                    "timezone",
                    "cutoff_time",
                    "ship_days",
                    "closed_on",
                    "daily_capacity",
                    "cost_per_shipment",
                    "can_ship",
                    "can_pickup",
                    "ships_from_store",
                )
            },
        ),
    )


@admin.register(StockLevel)
class StockLevelAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = (
        "sku",
        "location",
        "on_hand",
        "reserved",
        "safety_stock",
        "atp",
        "receiving",
        "damaged",
        "quarantine",
        "updated_at",
    )
    list_filter = ("location",)
    list_select_related = ("sku", "location")
    search_fields = ("=sku__code",)
    autocomplete_fields = ("sku", "location")
    readonly_fields = ("on_hand", "reserved", "receiving", "damaged", "quarantine", "refurbish", "updated_at")
    ordering = ("-id",)

    @admin.display(description="ATP")
    def atp(self, obj: StockLevel) -> int:
        return obj.atp

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return (*self.readonly_fields, "sku", "location")
        return self.readonly_fields


@admin.register(StockMovement)
class StockMovementAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "sku",
        "location",
        "delta",
        "bucket",
        "reason",
        "balance_after",
        "reference",
        "actor",
    )
    list_filter = ("reason", "bucket", "location")
    list_select_related = ("sku", "location")
    search_fields = ("=sku__code", "=reference", "=actor")
    raw_id_fields = ("sku", "location", "actor_user")
    ordering = ("-id",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Reservation)
class ReservationAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = ("id", "order_line", "sku", "location", "quantity", "status", "created_at", "updated_at")
    list_filter = ("status", "location")
    list_select_related = ("order_line", "sku", "location")
    search_fields = ("=sku__code", "=order_line__order__external_id")
    raw_id_fields = ("order_line", "sku", "location")
    ordering = ("-id",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class InboundLineInline(admin.TabularInline):
    model = InboundLine
    extra = 0
    autocomplete_fields = ("sku",)
    fields = ("sku", "quantity_expected", "quantity_received", "expected_at")
    readonly_fields = ("quantity_received",)


@admin.register(InboundShipment)
class InboundShipmentAdmin(admin.ModelAdmin):
    list_display = ("reference", "kind", "supplier", "location", "status", "expected_at", "created_at")
    list_filter = ("kind", "status", "location")
    list_select_related = ("location",)
    search_fields = ("reference", "supplier")
    autocomplete_fields = ("location",)
    readonly_fields = ("created_at", "updated_at")
    ordering = ("expected_at",)
    inlines = (InboundLineInline,)
