from __future__ import annotations

from rest_framework import serializers

from orders.models import Hold, Order, OrderEvent, OrderLine


class OrderListSerializer(serializers.ModelSerializer):
    channel = serializers.CharField(source="account.kind", read_only=True)
    account_name = serializers.CharField(source="account.name", read_only=True)
    # The account's id (the account is held by id; its kind and name come through config.kernel.accounts).
    account = serializers.IntegerField(source="account_id", read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "external_id",
            "external_reference",
            "channel",
            "account",
            "account_name",
            "status",
            "channel_status",
            "marketplace_fulfilled",
            "placed_at",
            "ship_by",
            "currency",
            "total_amount",
            "customer_name",
            "on_hold",
        ]
        read_only_fields = fields


class OrderLineSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True, default=None)

    class Meta:
        model = OrderLine
        fields = [
            "id",
            "external_id",
            "channel_sku",
            "sku",
            "sku_code",
            "title",
            "quantity",
            "quantity_cancelled",
            "quantity_shipped",
            "quantity_returned",
            "unit_price",
            "currency",
            "status",
            "channel_status",
            "ship_by",
            "deliver_by",
        ]
        read_only_fields = fields


class HoldSerializer(serializers.ModelSerializer):
    class Meta:
        model = Hold
        fields = [
            "id",
            "kind",
            "reason",
            "placed_by",
            "placed_at",
            "released_by",
            "released_at",
            "release_reason",
        ]
        read_only_fields = fields


class OrderEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderEvent
        fields = ["id", "kind", "from_status", "to_status", "actor", "reason", "data", "created_at"]
        read_only_fields = fields


class OrderDetailSerializer(OrderListSerializer):
    lines = OrderLineSerializer(many=True, read_only=True)
    holds = HoldSerializer(many=True, read_only=True)
    events = OrderEventSerializer(many=True, read_only=True)

    class Meta(OrderListSerializer.Meta):
        fields = [
            *OrderListSerializer.Meta.fields,
            "deliver_by",
            "paid_at",
            "service_level",
            "shipping_method",
            "source_updated_at",
            "lines",
            "holds",
            "events",
        ]
        read_only_fields = fields
