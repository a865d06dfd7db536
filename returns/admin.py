"""Returns admin."""

from __future__ import annotations

from django.contrib import admin

from .models import (
    Refund,
    ReturnAuthorization,
    ReturnEvent,
    ReturnLine,
    ReturnPolicy,
    ReturnReceipt,
    ReturnSyncState,
    ReturnUnit,
    WaitingChannelReturn,
)


class ReturnLineInline(admin.TabularInline):
    model = ReturnLine
    extra = 0
    raw_id_fields = ("order_line",)
    fields = ("order_line", "quantity", "quantity_received", "disposition", "note")
    readonly_fields = ("quantity_received",)


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    fields = ("amount", "currency", "reason", "status", "external_id", "created_by", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ReturnAuthorization)
class ReturnAuthorizationAdmin(admin.ModelAdmin):
    list_display = ("rma_number", "order", "status", "reason", "return_location", "created_by", "created_at")
    list_filter = ("status", "reason", "return_location")
    list_select_related = ("order", "return_location")
    search_fields = ("=rma_number", "=external_id", "=return_tracking_number", "=order__external_id")
    raw_id_fields = ("order", "exchange_order")
    autocomplete_fields = ("return_location", "carrier")
    readonly_fields = ("created_at", "updated_at", "received_at")
    ordering = ("-id",)
    inlines = (ReturnLineInline, RefundInline)


@admin.register(ReturnLine)
class ReturnLineAdmin(admin.ModelAdmin):
    list_display = ("id", "rma", "order_line", "quantity", "quantity_received", "disposition")
    list_filter = ("disposition",)
    list_select_related = ("rma", "order_line")
    search_fields = ("=rma__rma_number",)
    raw_id_fields = ("rma", "order_line")
    ordering = ("-id",)


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    list_display = ("id", "order", "rma", "amount", "currency", "status", "created_by", "created_at")
    list_filter = ("status", "currency")
    list_select_related = ("order", "rma")
    search_fields = ("=external_id", "=order__external_id", "=rma__rma_number")
    raw_id_fields = ("order", "rma")
    readonly_fields = ("created_at",)
    ordering = ("-id",)


# --- issue #18: policies (editable), receipts, units, events and sync state (read only) --------------------


@admin.register(ReturnPolicy)
class ReturnPolicyAdmin(admin.ModelAdmin):
    list_display = ("account", "exchange_policy", "overdue_after_days", "updated_at")
    list_select_related = ("account",)
    autocomplete_fields = ("account",)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ReturnReceipt)
class ReturnReceiptAdmin(ReadOnlyAdmin):
    list_display = ("id", "rma", "location", "idempotency_key", "actor", "created_at")
    list_select_related = ("rma", "location")
    search_fields = ("=rma__rma_number", "=idempotency_key")
    ordering = ("-id",)


@admin.register(ReturnUnit)
class ReturnUnitAdmin(ReadOnlyAdmin):
    list_display = ("id", "line", "location", "quantity", "disposition", "quantity_inspected", "actor", "created_at")
    list_filter = ("disposition",)
    list_select_related = ("line", "location")
    search_fields = ("=line__rma__rma_number",)
    ordering = ("-id",)


@admin.register(ReturnEvent)
class ReturnEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "rma", "kind", "from_status", "to_status", "actor", "created_at")
    list_select_related = ("rma",)
    search_fields = ("=rma__rma_number",)
    ordering = ("-id",)


@admin.register(ReturnSyncState)
class ReturnSyncStateAdmin(ReadOnlyAdmin):
    list_display = ("account", "cursor", "last_run_at", "seen", "created", "last_error")
    list_select_related = ("account",)


@admin.register(WaitingChannelReturn)
class WaitingChannelReturnAdmin(ReadOnlyAdmin):
    list_display = ("key", "account", "order_external_id", "first_seen_at", "attempts", "case_id", "resolved_at")
    list_filter = ("account", ("resolved_at", admin.EmptyFieldListFilter))
    list_select_related = ("account",)
    search_fields = ("key", "order_external_id")
