"""Node API shapes: what a WMS/3PL/TMS reads and sends."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.kernel.limits import INT32_MAX
from fulfillment.models import Shipment, ShipmentLine, TrackingEvent, TrackingStatus
from orders.models import Hold, HoldKind, OrderEvent, ShipToAddress

# Order events a node polls with its shipments (data["shipment_id"] names the shipment).
NODE_EVENT_KINDS = ("address_changed",)


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


class ShipToSerializer(serializers.ModelSerializer):
    class Meta:
        model = ShipToAddress
        fields = [
            "name",
            "company",
            "line1",
            "line2",
            "line3",
            "city",
            "region",
            "postal_code",
            "country_code",
            "phone",
            "address_type",
        ]
        read_only_fields = fields


class OrderHoldSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(
        read_only=True, help_text=f"Why the order is held: {', '.join(HoldKind.values)} (cancel_request: do not ship)"
    )

    class Meta:
        model = Hold
        fields = ["kind", "reason", "placed_at"]
        read_only_fields = fields


class ShipmentEventSerializer(serializers.ModelSerializer):
    """A change the node must act on, e.g. "address_changed": the changed ship-to fields before and after."""

    before = serializers.SerializerMethodField()
    after = serializers.SerializerMethodField()

    class Meta:
        model = OrderEvent
        fields = ["id", "kind", "created_at", "reason", "before", "after"]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": True})
    def get_before(self, event: OrderEvent) -> dict:
        return event.data.get("before", {})

    @extend_schema_field({"type": "object", "additionalProperties": True})
    def get_after(self, event: OrderEvent) -> dict:
        return event.data.get("after", {})


class ShipmentSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="location.code", read_only=True)
    order = serializers.CharField(source="order.external_id", read_only=True)
    order_id = serializers.IntegerField(read_only=True)
    carrier = serializers.CharField(source="carrier.code", read_only=True, default=None, allow_null=True)
    # Empty until the shipment is shipped: a plain string, not a "uri" (the empty string is not one).
    tracking_url = serializers.CharField(read_only=True)
    ship_to = ShipToSerializer(source="order.ship_to", read_only=True, allow_null=True, default=None)
    holds = serializers.SerializerMethodField(help_text="The order's active holds")
    may_ship = serializers.SerializerMethodField(
        help_text="False while a buyer's cancel request holds the order: the node must not ship it"
    )
    events = serializers.SerializerMethodField(
        help_text="Changes the node must act on, oldest first (kind address_changed: relabel for the new ship-to)"
    )
    lines = ShipmentLineSerializer(many=True, read_only=True)

    @staticmethod
    def _holds(shipment: Shipment) -> list[Hold]:
        held = getattr(shipment.order, "active_holds", None)
        if held is None:
            held = list(shipment.order.holds.filter(released_at__isnull=True).order_by("pk"))
        return held

    @extend_schema_field(OrderHoldSerializer(many=True))
    def get_holds(self, shipment: Shipment) -> list[dict]:
        return OrderHoldSerializer(self._holds(shipment), many=True).data

    @extend_schema_field(serializers.BooleanField())
    def get_may_ship(self, shipment: Shipment) -> bool:
        return not any(hold.kind == HoldKind.CANCEL_REQUEST for hold in self._holds(shipment))

    @extend_schema_field(ShipmentEventSerializer(many=True))
    def get_events(self, shipment: Shipment) -> list[dict]:
        events = getattr(shipment.order, "node_events", None)
        if events is None:
            events = list(shipment.order.events.filter(kind__in=NODE_EVENT_KINDS).order_by("pk"))
        mine = [event for event in events if event.data.get("shipment_id") == shipment.pk]
        return ShipmentEventSerializer(mine, many=True).data

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
            "ship_to",
            "holds",
            "may_ship",
            "events",
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
    order_line = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    quantity = serializers.IntegerField(min_value=1, max_value=INT32_MAX)


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
