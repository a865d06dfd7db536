"""Node API shapes: what a WMS/3PL/TMS reads and sends."""

from __future__ import annotations

from rest_framework import serializers

from fulfillment.models import Shipment, ShipmentLine, TrackingEvent, TrackingStatus


class ShipmentLineSerializer(serializers.ModelSerializer):
    order_line = serializers.IntegerField(source="order_line_id", read_only=True)
    sku = serializers.CharField(source="order_line.sku.code", read_only=True, default="")
    channel_sku = serializers.CharField(source="order_line.channel_sku", read_only=True)
    title = serializers.CharField(source="order_line.title", read_only=True)
    quantity_open = serializers.IntegerField(read_only=True)

    class Meta:
        model = ShipmentLine
        fields = [
            "id",
            "order_line",
            "sku",
            "channel_sku",
            "title",
            "quantity",
            "quantity_shipped",
            "quantity_short",
            "quantity_cancelled",
            "quantity_open",
        ]


class ShipmentSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="location.code", read_only=True)
    order = serializers.CharField(source="order.external_id", read_only=True)
    order_id = serializers.IntegerField(read_only=True)
    carrier = serializers.CharField(source="carrier.code", read_only=True, default=None)
    lines = ShipmentLineSerializer(many=True, read_only=True)

    class Meta:
        model = Shipment
        fields = [
            "id",
            "order_id",
            "order",
            "node",
            "kind",
            "status",
            "service_level",
            "ship_by",
            "released_at",
            "acknowledged_at",
            "shipped_at",
            "carrier",
            "tracking_number",
            "tracking_url",
            "promised_delivery_at",
            "delivered_at",
            "pickup_deadline",
            "external_reference",
            "lines",
        ]
        read_only_fields = fields


class AcknowledgeSerializer(serializers.Serializer):
    external_reference = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")


class ShipSerializer(serializers.Serializer):
    carrier = serializers.CharField(max_length=32, help_text="Carrier code, e.g. UPS")
    tracking_number = serializers.CharField(max_length=128)
    shipped_at = serializers.DateTimeField(help_text="When the parcel actually left the node (ISO 8601 with offset)")
    service_level = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


class ShortLineSerializer(serializers.Serializer):
    order_line = serializers.IntegerField(min_value=1)
    quantity = serializers.IntegerField(min_value=1)


class ShortPickSerializer(serializers.Serializer):
    lines = ShortLineSerializer(many=True, allow_empty=False)
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    def validate_lines(self, value):
        ids = [line["order_line"] for line in value]
        if len(ids) != len(set(ids)):
            raise serializers.ValidationError("each order line at most once")
        return value


class PickedUpSerializer(serializers.Serializer):
    picked_up_at = serializers.DateTimeField(required=False)


class TrackingEventInSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=TrackingStatus.choices)
    occurred_at = serializers.DateTimeField()
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    location = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    id = serializers.CharField(
        max_length=255, required=False, allow_blank=True, default="", help_text="The feed's event id (dedupe key)"
    )


class TrackingPostSerializer(serializers.Serializer):
    events = TrackingEventInSerializer(many=True, allow_empty=False, max_length=500)
    source = serializers.CharField(max_length=64, required=False, default="tms")


class TrackingFeedSerializer(TrackingPostSerializer):
    tracking_number = serializers.CharField(max_length=128)
    carrier = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")


class TrackingEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrackingEvent
        fields = ["id", "status", "description", "location_text", "occurred_at", "received_at", "source"]


class TrackingResultSerializer(serializers.Serializer):
    shipment = serializers.IntegerField()
    status = serializers.CharField()
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class ShortPickResultSerializer(serializers.Serializer):
    shipment = ShipmentSerializer()
    rerouted_to = serializers.ListField(child=serializers.IntegerField(), help_text="New shipment ids")
    exception_case = serializers.IntegerField(allow_null=True)
