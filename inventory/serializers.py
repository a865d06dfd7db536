from __future__ import annotations

from rest_framework import serializers

from config.kernel.limits import INT32_MAX
from inventory.models import InboundKind, InboundLine, InboundShipment, Location, Sku, StockLevel, StockMovement


class StockLevelSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True)
    location_code = serializers.CharField(source="location.code", read_only=True)
    atp = serializers.IntegerField(
        source="atp_units", read_only=True, help_text="on_hand - reserved - safety_stock, >= 0"
    )
    inbound = serializers.IntegerField(source="inbound_units", read_only=True, help_text="Outstanding on open POs/ASNs")

    class Meta:
        model = StockLevel
        fields = [
            "id",
            "sku",
            "sku_code",
            "location",
            "location_code",
            "on_hand",
            "reserved",
            "safety_stock",
            "atp",
            "inbound",
            "receiving",
            "damaged",
            "quarantine",
            "refurbish",
            "updated_at",
        ]
        read_only_fields = fields


class StockMovementSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True)
    location_code = serializers.CharField(source="location.code", read_only=True)

    class Meta:
        model = StockMovement
        fields = [
            "id",
            "sku",
            "sku_code",
            "location",
            "location_code",
            "delta",
            "bucket",
            "reason",
            "reference",
            "note",
            "actor",
            "idempotency_key",
            "balance_after",
            "created_at",
        ]
        read_only_fields = fields


class SnapshotRowSerializer(serializers.Serializer):
    sku = serializers.CharField(help_text="SKU code")
    location = serializers.CharField(help_text="Location code")
    on_hand = serializers.IntegerField(min_value=0, max_value=INT32_MAX, help_text="Absolute sellable units counted")


class SnapshotRequestSerializer(serializers.Serializer):
    """Documents the request; every row is validated by the service so all bad rows are named at once."""

    idempotency_key = serializers.CharField(max_length=255)
    source = serializers.CharField(max_length=150, required=False, allow_blank=True, help_text="e.g. wms:dallas")
    rows = SnapshotRowSerializer(many=True)


class SnapshotParseSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=255)
    source = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    rows = serializers.ListField(child=serializers.JSONField(), allow_empty=False, max_length=10_000)


class SnapshotAppliedRowSerializer(serializers.Serializer):
    row = serializers.IntegerField()
    sku = serializers.CharField()
    location = serializers.CharField()
    before = serializers.IntegerField()
    after = serializers.IntegerField()
    delta = serializers.IntegerField()
    proposed = serializers.BooleanField(
        default=False, help_text="Beyond the node's count tolerance: proposed to a person, not applied"
    )


class SnapshotResultSerializer(serializers.Serializer):
    snapshot_id = serializers.IntegerField()
    idempotency_key = serializers.CharField()
    replayed = serializers.BooleanField()
    changed = serializers.IntegerField()
    proposed = serializers.IntegerField(help_text="Counts beyond the node's tolerance, waiting for a person")
    rows = SnapshotAppliedRowSerializer(many=True)


class RowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(allow_null=True, help_text="0-based index of the offending row")
    sku = serializers.JSONField(required=False)
    location = serializers.JSONField(required=False)
    errors = serializers.ListField(child=serializers.CharField())


class RowErrorsResponseSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    rows = RowErrorSerializer(many=True)


class AdjustmentSerializer(serializers.Serializer):
    sku = serializers.SlugRelatedField(slug_field="code", queryset=Sku.objects.all(), help_text="SKU code")
    location = serializers.SlugRelatedField(
        slug_field="code", queryset=Location.objects.all(), help_text="Location code"
    )
    delta = serializers.IntegerField(
        min_value=-INT32_MAX, max_value=INT32_MAX, help_text="Units to add (positive) or remove (negative); never zero"
    )
    reason = serializers.CharField(max_length=2000, help_text="Why: kept on the movement as its audit note")
    reference = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    idempotency_key = serializers.CharField(max_length=255, help_text="A replay with the same key changes nothing")

    def validate_delta(self, value: int) -> int:
        if value == 0:
            raise serializers.ValidationError("must not be zero")
        return value


class InboundLineSerializer(serializers.ModelSerializer):
    sku = serializers.SlugRelatedField(slug_field="code", queryset=Sku.objects.all(), help_text="SKU code")
    quantity_outstanding = serializers.IntegerField(read_only=True)

    class Meta:
        model = InboundLine
        fields = ["id", "sku", "quantity_expected", "quantity_received", "quantity_outstanding", "expected_at"]
        read_only_fields = ["id", "quantity_received", "quantity_outstanding"]
        extra_kwargs = {"quantity_expected": {"min_value": 1}}


class InboundShipmentSerializer(serializers.ModelSerializer):
    location = serializers.SlugRelatedField(
        slug_field="code", queryset=Location.objects.all(), help_text="Location code"
    )
    kind = serializers.ChoiceField(choices=InboundKind.choices, default=InboundKind.PO)
    lines = InboundLineSerializer(many=True)

    class Meta:
        model = InboundShipment
        fields = ["id", "kind", "reference", "supplier", "location", "status", "expected_at", "created_at", "lines"]
        read_only_fields = ["id", "status", "created_at"]

    def validate_lines(self, value):
        if not value:
            raise serializers.ValidationError("at least one line is required")
        return value


class ReceiveLineSerializer(serializers.Serializer):
    line = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="Inbound line id")
    quantity = serializers.IntegerField(min_value=1, max_value=INT32_MAX)


class ReceiveSerializer(serializers.Serializer):
    lines = ReceiveLineSerializer(many=True, allow_empty=False)
    idempotency_key = serializers.CharField(max_length=255)

    def validate_lines(self, value):
        seen = set()
        for index, row in enumerate(value):
            if row["line"] in seen:
                raise serializers.ValidationError(f"row {index}: inbound line {row['line']} appears twice")
            seen.add(row["line"])
        return value


class ReceiveResultSerializer(serializers.Serializer):
    shipment = InboundShipmentSerializer()
    replayed = serializers.BooleanField()
    movements = StockMovementSerializer(many=True)
    allocated_lines = serializers.ListField(
        child=serializers.IntegerField(), help_text="Backordered order lines now reserved"
    )
