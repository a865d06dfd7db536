from __future__ import annotations

from django.contrib import admin

from config.kernel import accounts
from config.kernel.admin import BigTableAdminMixin
from orders.models import ExceptionCase, Hold, Order, OrderEvent, OrderLine, ShipToAddress


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    raw_id_fields = ("sku",)
    fields = (
        "external_id",
        "channel_sku",
        "sku",
        "quantity",
        "quantity_cancelled",
        "quantity_shipped",
        "quantity_returned",
        "unit_price",
        "status",
        "ship_by",
    )
    readonly_fields = ("quantity_cancelled", "quantity_shipped", "quantity_returned", "status")

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AccountListFilter(admin.SimpleListFilter):
    """By channel account (the account is held by id: its name comes through config.kernel.accounts)."""

    title = "account"
    parameter_name = "account_id"

    def lookups(self, request, model_admin):
        return [(str(pk), name) for pk, name in accounts.account_choices()]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(account_id=int(value))
        return queryset


@admin.register(Order)
class OrderAdmin(BigTableAdminMixin, admin.ModelAdmin):
    """Orders change through services (state machine, holds); the admin is for looking."""

    list_display = (
        "__str__",
        "account",
        "status",
        "placed_at",
        "ship_by",
        "on_hold",
        "marketplace_fulfilled",
    )
    list_filter = ("status", "on_hold", "marketplace_fulfilled", AccountListFilter)
    search_fields = ("=external_id", "=external_reference")
    raw_id_fields = ("ship_to",)
    readonly_fields = ["account", *(f.name for f in Order._meta.fields)]
    inlines = [OrderLineInline]
    ordering = ("-placed_at", "-id")

    def get_queryset(self, request):
        # The page's accounts in one query (the account is not a relation: no select_related).
        return super().get_queryset(request).prefetch_related("account")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OrderEvent)
class OrderEventAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = ("order", "kind", "from_status", "to_status", "actor", "created_at")
    list_filter = ("kind",)
    search_fields = ("=order__external_id", "=actor")
    raw_id_fields = ("order", "actor_user")
    ordering = ("-id",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Hold)
class HoldAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = ("order", "kind", "placed_by", "placed_at", "released_at")
    list_filter = ("kind",)
    raw_id_fields = ("order",)
    readonly_fields = [f.name for f in Hold._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(ExceptionCase)
class ExceptionCaseAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = ("title", "kind", "severity", "status", "owner", "due_at", "created_at")
    list_filter = ("status", "kind", "severity")
    search_fields = ("=dedupe_key", "title")
    raw_id_fields = ("order", "sku", "owner")
    readonly_fields = ("dedupe_key", "opened_by", "resolved_by", "resolved_at", "created_at", "updated_at")


@admin.register(ShipToAddress)
class ShipToAddressAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "country_code", "purged_at")
    search_fields = ("=postal_code",)
