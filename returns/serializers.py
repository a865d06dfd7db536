"""The returns API's shapes: RMAs as a returns 3PL sees them, and the receipts and inspections it posts."""

from __future__ import annotations

from rest_framework import serializers

from config.kernel.limits import ID_MAX
from returns.models import Disposition, ReturnAuthorization, ReturnLine

FINAL = [c for c in Disposition.choices if c[0] != Disposition.PENDING]


class ReturnLineSerializer(serializers.ModelSerializer):
    order_line = serializers.IntegerField(source="order_line_id", read_only=True)
    order_line_external_id = serializers.CharField(source="order_line.external_id", read_only=True)
    sku = serializers.CharField(source="order_line.sku.code", read_only=True, default=None)
    barcode = serializers.CharField(source="order_line.sku.barcode", read_only=True, default=None)
    channel_sku = serializers.CharField(source="order_line.channel_sku", read_only=True)

    class Meta:
        model = ReturnLine
        fields = [
            "id",
            "order_line",
            "order_line_external_id",
            "sku",
            "barcode",
            "channel_sku",
            "quantity",
            "quantity_received",
            "quantity_inspected",
            "disposition",
            "reason",
        ]
        read_only_fields = fields


class RmaSerializer(serializers.ModelSerializer):
    order = serializers.CharField(source="order.external_id", read_only=True)
    channel = serializers.CharField(source="order.account.kind", read_only=True)
    return_location = serializers.CharField(source="return_location.code", read_only=True, default=None)
    lines = ReturnLineSerializer(many=True, read_only=True)

    class Meta:
        model = ReturnAuthorization
        fields = [
            "id",
            "rma_number",
            "order",
            "channel",
            "status",
            "reason",
            "return_location",
            "return_tracking_number",
            "external_id",
            "created_at",
            "updated_at",
            "received_at",
            "lines",
        ]
        read_only_fields = fields


class ReceiptItemSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=128, required=False, allow_blank=True, help_text="SKU code or barcode")
    return_line = serializers.IntegerField(
        required=False, min_value=1, max_value=ID_MAX, help_text="Or the return line's id"
    )
    quantity = serializers.IntegerField(min_value=1, max_value=100_000)
    disposition = serializers.ChoiceField(choices=Disposition.choices, default=Disposition.PENDING)
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if not attrs.get("sku") and not attrs.get("return_line"):
            raise serializers.ValidationError("name the unit by sku (or barcode) or by return_line")
        return attrs


class ReceiptSerializer(serializers.Serializer):
    location = serializers.CharField(
        max_length=32, required=False, help_text="Node code; a node token receives at its own node"
    )
    items = ReceiptItemSerializer(many=True, allow_empty=False, max_length=500)


class InspectionItemSerializer(ReceiptItemSerializer):
    disposition = serializers.ChoiceField(choices=FINAL)


class InspectionSerializer(serializers.Serializer):
    items = InspectionItemSerializer(many=True, allow_empty=False, max_length=500)


class ReceiptResultSerializer(serializers.Serializer):
    receipt = serializers.IntegerField()
    replayed = serializers.BooleanField()
    units = serializers.ListField(child=serializers.DictField())
    rma = RmaSerializer()
