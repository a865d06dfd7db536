from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.text import capfirst

from channels.models import (
    PROTECTED_SHOWN,
    ChannelAccount,
    ChannelAccountEvent,
    ChannelAvailability,
    ChannelLocation,
    InboundEvent,
    Listing,
    OutboxMessage,
    SyncRun,
)
from channels.services import (
    InvalidCredentials,
    channel_account_set_credentials,
    channel_location_map,
    credentials_validate,
)
from config.kernel.admin import BigTableAdminMixin

ADMIN_GROUP = "Admin"


def is_channel_admin(request: HttpRequest) -> bool:
    """Superusers and members of the "Admin" group; cached on the request (asked several times a page)."""
    cached = getattr(request, "_waybill_is_channel_admin", None)
    if cached is None:
        user = request.user
        cached = bool(user.is_active and (user.is_superuser or user.groups.filter(name=ADMIN_GROUP).exists()))
        request._waybill_is_channel_admin = cached
    return cached


class ChannelAdminOnlyMixin:
    """Every permission requires a superuser or the "Admin" group, whatever model perms say."""

    def has_view_permission(self, request, obj=None):
        return is_channel_admin(request)

    def has_add_permission(self, request):
        return is_channel_admin(request)

    def has_change_permission(self, request, obj=None):
        return is_channel_admin(request)

    def has_delete_permission(self, request, obj=None):
        return is_channel_admin(request)


class WriteOnlyTextarea(forms.Textarea):
    """Never renders a value, not even what was typed when the form comes back with errors."""

    def format_value(self, value):
        return None


class ChannelAccountAdminForm(forms.ModelForm):
    new_credentials = forms.CharField(
        required=False,
        label="New credentials",
        widget=WriteOnlyTextarea(attrs={"rows": 6, "autocomplete": "off", "spellcheck": "false"}),
        help_text=(
            'A JSON object of strings, e.g. {"refresh_token": "…", "client_id": "…", "client_secret": "…", '
            '"webhook_secret": "…"}. It replaces all current credentials. Leave blank to keep them. '
            "Stored values are never shown."
        ),
    )

    class Meta:
        model = ChannelAccount
        # Never credentials_encrypted (it is editable=False too): secrets enter only via new_credentials.
        fields = (
            "name",
            "kind",
            "is_enabled",
            "api_base_url",
            "api_version",
            "marketplace_ids",
            "seller_id",
            "inventory_location_id",
            "handling_time_days",
            "cutoff_time",
            "timezone",
            "eligible_locations",
            "buffer_policy",
            "buffer_value",
            "sync_interval_seconds",
            "sync_cursor",
            "buyer_cancel_policy",
        )

    def clean_new_credentials(self) -> dict | None:
        raw = (self.cleaned_data.get("new_credentials") or "").strip()
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            # No parser detail: it could quote part of the secret.
            raise forms.ValidationError("Not valid JSON.") from None
        try:
            return credentials_validate(data)
        except InvalidCredentials as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(ChannelAccount)
class ChannelAccountAdmin(ChannelAdminOnlyMixin, admin.ModelAdmin):
    form = ChannelAccountAdminForm
    list_display = (
        "name",
        "kind",
        "is_enabled",
        "api_base_url",
        "credentials_status",
        "last_synced_at",
        "sync_lag_seconds",
    )
    list_filter = ("kind", "is_enabled")
    search_fields = ("name", "seller_id")
    filter_horizontal = ("eligible_locations",)
    readonly_fields = (
        "credentials_status",
        "credentials_rotated_at",
        "sync_lag_seconds",
        "last_synced_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("name", "kind", "is_enabled")}),
        (
            "API",
            {"fields": ("api_base_url", "api_version", "marketplace_ids", "seller_id", "inventory_location_id")},
        ),
        ("Credentials", {"fields": ("credentials_status", "credentials_rotated_at", "new_credentials")}),
        (
            "Promise (channels that send no ship-by)",
            {"fields": ("handling_time_days", "cutoff_time", "timezone")},
        ),
        ("Inventory", {"fields": ("eligible_locations", "buffer_policy", "buffer_value")}),
        ("Orders", {"fields": ("buyer_cancel_policy",)}),
        ("Data protection", {"fields": ("pii_retention_days", "pii_legal_hold")}),
        (
            "Sync",
            {"fields": ("sync_interval_seconds", "sync_cursor", "last_synced_at", "sync_lag_seconds")},
        ),
        (None, {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="Credentials")
    def credentials_status(self, obj: ChannelAccount) -> str:
        return "set" if obj.has_credentials else "not set"

    def get_deleted_objects(self, objs, request):
        # Orders hold the account by id (no relation Django's collector follows): an account with orders is
        # protected, as PROTECT made it, and its exception cases are listed with what goes with it.
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        for account in objs:
            for order in account.orders.order_by("pk")[:PROTECTED_SHOWN]:
                protected.append(f"{capfirst(order._meta.verbose_name)}: {order}")
            cases = account.exception_cases.count()
            if cases:
                deleted.append(f"{cases} exception case(s) of {account}")
                label = capfirst(account.exception_cases.model._meta.verbose_name_plural)
                model_count[label] = model_count.get(label, 0) + cases
        return deleted, model_count, perms_needed, protected

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        credentials = form.cleaned_data.get("new_credentials")
        if credentials:
            channel_account_set_credentials(
                account=obj,
                credentials=credentials,
                actor=request.user.get_username(),
                reason="Changed in admin",
            )


@admin.register(ChannelAccountEvent)
class ChannelAccountEventAdmin(ChannelAdminOnlyMixin, admin.ModelAdmin):
    list_display = ("account", "kind", "actor", "created_at")
    list_filter = ("kind",)
    list_select_related = ("account",)
    ordering = ("-pk",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    list_display = (
        "channel_sku",
        "account",
        "sku",
        "external_listing_id",
        "external_variant_id",
        "is_active",
    )
    list_filter = ("account", "is_active", ("sku", admin.EmptyFieldListFilter))
    list_select_related = ("account", "sku")
    search_fields = ("=channel_sku", "=external_listing_id", "=external_variant_id")
    raw_id_fields = ("sku",)
    readonly_fields = ("created_at",)


@admin.register(ChannelLocation)
class ChannelLocationAdmin(admin.ModelAdmin):
    """Which Waybill store a channel's location is: pickup orders naming an unmapped one are held."""

    list_display = ("external_id", "name", "account", "location")
    list_filter = ("account", ("location", admin.EmptyFieldListFilter))
    list_select_related = ("account", "location")
    search_fields = ("=external_id", "name")
    readonly_fields = ("created_at",)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # Through the service: mapping a pickup store releases the orders held for it.
        changed = channel_location_map(
            channel_location=obj.pk, location_id=obj.location_id, actor=request.user.get_username()
        )
        if changed:
            self.message_user(request, f"{len(changed)} held pickup order(s) now go to {obj.location}.")


def _pretty_json(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


class ReadOnlyAdminMixin:
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(InboundEvent)
class InboundEventAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "account",
        "kind",
        "external_id",
        "status",
        "attempts",
        "received_at",
        "processed_at",
    )
    list_filter = ("status", "kind", "account")
    list_select_related = ("account",)
    # Exact matches only: they use the indexes; a LIKE over millions of rows would not.
    search_fields = ("=external_id", "=dedupe_key")
    ordering = ("-pk",)
    raw_id_fields = ("order",)
    exclude = ("payload",)
    readonly_fields = ("payload_pretty",)

    @admin.display(description="Payload")
    def payload_pretty(self, obj: InboundEvent) -> str:
        return _pretty_json(obj.payload)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = ("id", "account", "kind", "dedupe_key", "status", "attempts", "next_attempt_at", "sent_at")
    list_filter = ("status", "kind", "account")
    list_select_related = ("account",)
    search_fields = ("=dedupe_key",)
    ordering = ("-pk",)
    exclude = ("payload", "response", "last_error_detail")
    # Status, next attempt and last error stay editable so a parked message can be re-queued.
    readonly_fields = (
        "account",
        "kind",
        "dedupe_key",
        "payload_pretty",
        "attempts",
        "sent_at",
        "last_error_detail_pretty",
        "response_pretty",
        "order",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request):
        # Outbox rows are written by services, in the same transaction as the change they report.
        return False

    @admin.display(description="Payload")
    def payload_pretty(self, obj: OutboxMessage) -> str:
        return _pretty_json(obj.payload)

    @admin.display(description="Response")
    def response_pretty(self, obj: OutboxMessage) -> str:
        return _pretty_json(obj.response)

    @admin.display(description="The channel's error answer")
    def last_error_detail_pretty(self, obj: OutboxMessage) -> str:
        return _pretty_json(obj.last_error_detail) if obj.last_error_detail else "—"


@admin.register(SyncRun)
class SyncRunAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "account",
        "kind",
        "status",
        "started_at",
        "duration_seconds",
        "pages",
        "orders_seen",
        "orders_created",
        "orders_updated",
        "orders_failed",
    )
    list_filter = ("status", "kind", "account")
    list_select_related = ("account",)
    ordering = ("-pk",)


@admin.register(ChannelAvailability)
class ChannelAvailabilityAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = (
        "sku",
        "account",
        "quantity",
        "last_pushed_quantity",
        "last_pushed_at",
        "computed_at",
        "needs_push",
    )
    list_filter = ("needs_push",)
    list_select_related = ("sku", "account")
    search_fields = ("=sku__code",)
    raw_id_fields = ("account", "sku")
    ordering = ("-id",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
