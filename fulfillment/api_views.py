"""The WMS / 3PL / TMS API: a node's released shipments, and what the node reports back.

Thin: parse, call a fulfilment service, answer. Every POST takes an optional Idempotency-Key.
"""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from config.security.tokens import IntegrationTokenAuthentication
from fulfillment import services
from fulfillment.api import NodeOrStaffPermission, NodeTokenAuthentication, idempotent, is_node, request_actor
from fulfillment.filters import ShipmentFilter
from fulfillment.models import Shipment, ShipmentLine
from fulfillment.serializers import (
    NODE_EVENT_KINDS,
    AcknowledgeSerializer,
    PickedUpSerializer,
    ShipmentSerializer,
    ShipSerializer,
    ShortPickResultSerializer,
    ShortPickSerializer,
    TrackingFeedSerializer,
    TrackingPostSerializer,
    TrackingResultSerializer,
)
from fulfillment.services import TrackingInput
from orders.models import Hold, OrderEvent

AUTH = [NodeTokenAuthentication, IntegrationTokenAuthentication, SessionAuthentication]
IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Replaying a request with the same key returns the first answer and changes nothing.",
)


class ShipmentCursorPagination(CursorPagination):
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"
    ordering = ("id",)


def tracking_inputs(events: list[dict]) -> list[TrackingInput]:
    return [
        TrackingInput(
            status=e["status"],
            occurred_at=e["occurred_at"],
            description=e["description"],
            location_text=e["location"],
            dedupe_key=e["id"],
            raw={k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in e.items()},
        )
        for e in events
    ]


@extend_schema(tags=["fulfillment: node API"])
class ShipmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Shipments released to a node. A node token sees only its own node's shipments; staff see all
    (filter with `node`). List `?status=released` for the pick queue, and `?changed_since=<time>` for the
    shipments changed since the last poll (status, or an event such as a new ship-to: see `events`). A
    shipment whose order a buyer's cancel request holds (`may_ship` false) must not ship: the ship call is
    refused with 409."""

    authentication_classes = AUTH
    permission_classes = [NodeOrStaffPermission]
    serializer_class = ShipmentSerializer
    filterset_class = ShipmentFilter
    pagination_class = ShipmentCursorPagination
    view_perm = "fulfillment.view_shipment"
    change_perm = "fulfillment.change_shipment"

    def get_queryset(self):
        qs = Shipment.objects.select_related("order__ship_to", "location", "carrier").prefetch_related(
            Prefetch("lines", queryset=ShipmentLine.objects.select_related("order_line__sku").order_by("pk")),
            Prefetch(
                "order__holds",
                queryset=Hold.objects.filter(released_at__isnull=True).order_by("pk"),
                to_attr="active_holds",
            ),
            Prefetch(
                "order__events",
                queryset=OrderEvent.objects.filter(kind__in=NODE_EVENT_KINDS).order_by("pk"),
                to_attr="node_events",
            ),
        )
        if is_node(self.request):
            qs = qs.filter(location_id=self.request.user.location_id)
        return qs.order_by("id")

    def _shipment(self) -> Shipment:
        # Through the scoped queryset: another node's shipment is a 404, not a 403.
        try:
            scoped = Shipment.objects.all()
            if is_node(self.request):
                scoped = scoped.filter(location_id=self.request.user.location_id)
            return scoped.only("pk").get(pk=self.kwargs["pk"])
        except (Shipment.DoesNotExist, ValueError):
            raise NotFound("no such shipment for this node") from None

    def _answer(self, shipment_id: int, status: int = 200) -> Response:
        return Response(ShipmentSerializer(self.get_queryset().get(pk=shipment_id)).data, status=status)

    def _body(self, serializer_class):
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    @extend_schema(request=AcknowledgeSerializer, responses=ShipmentSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"])
    @idempotent
    def acknowledge(self, request, pk=None):
        data = self._body(AcknowledgeSerializer)
        shipment = self._shipment()
        services.shipment_acknowledge(
            shipment=shipment.pk, external_reference=data["external_reference"], actor=request_actor(request)
        )
        return self._answer(shipment.pk)

    @extend_schema(request=None, responses=ShipmentSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"])
    @idempotent
    def picking(self, request, pk=None):
        shipment = self._shipment()
        services.shipment_pick_start(shipment=shipment.pk, actor=request_actor(request))
        return self._answer(shipment.pk)

    @extend_schema(request=None, responses=ShipmentSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"])
    @idempotent
    def packed(self, request, pk=None):
        shipment = self._shipment()
        services.shipment_pack(shipment=shipment.pk, actor=request_actor(request))
        return self._answer(shipment.pk)

    @extend_schema(request=ShipSerializer, responses=ShipmentSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"])
    @idempotent
    def shipped(self, request, pk=None):
        """The parcel left the node: carrier, tracking number and the actual ship time."""
        data = self._body(ShipSerializer)
        shipment = self._shipment()
        services.shipment_ship(
            shipment=shipment.pk,
            carrier_code=data["carrier"],
            tracking_number=data["tracking_number"],
            shipped_at=data["shipped_at"],
            service_level=data["service_level"],
            actor=request_actor(request),
        )
        return self._answer(shipment.pk)

    @extend_schema(request=ShortPickSerializer, responses=ShortPickResultSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"], url_path="short-pick")
    @idempotent
    def short_pick(self, request, pk=None):
        """Units the node could not find: they are released and only they are re-routed."""
        data = self._body(ShortPickSerializer)
        shipment = self._shipment()
        result = services.shipment_short_pick(
            shipment=shipment.pk,
            lines={line["order_line"]: line["quantity"] for line in data["lines"]},
            reason=data["reason"],
            actor=request_actor(request),
        )
        return Response(
            {
                "shipment": ShipmentSerializer(self.get_queryset().get(pk=shipment.pk)).data,
                "rerouted_to": result.reroute.shipment_ids if result.reroute else [],
                "exception_case": result.exception_case_id,
            }
        )

    @extend_schema(request=None, responses=ShipmentSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"], url_path="ready-for-pickup")
    @idempotent
    def ready_for_pickup(self, request, pk=None):
        shipment = self._shipment()
        services.shipment_ready_for_pickup(shipment=shipment.pk, actor=request_actor(request))
        return self._answer(shipment.pk)

    @extend_schema(request=PickedUpSerializer, responses=ShipmentSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"], url_path="picked-up")
    @idempotent
    def picked_up(self, request, pk=None):
        data = self._body(PickedUpSerializer)
        shipment = self._shipment()
        services.shipment_picked_up(
            shipment=shipment.pk, picked_up_at=data.get("picked_up_at"), actor=request_actor(request)
        )
        return self._answer(shipment.pk)

    @extend_schema(request=TrackingPostSerializer, responses=TrackingResultSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"])
    @idempotent
    def tracking(self, request, pk=None):
        """Tracking events for this shipment; events already stored (same id) are skipped."""
        data = self._body(TrackingPostSerializer)
        shipment = self._shipment()
        result = services.tracking_events_record(
            shipment=shipment.pk,
            events=tracking_inputs(data["events"]),
            source=data["source"],
            actor=request_actor(request),
        )
        return Response(_tracking_answer(result))


def _tracking_answer(result) -> dict:
    return {
        "shipment": result.shipment.pk,
        "status": result.shipment.status,
        "created": result.created,
        "duplicates": result.duplicates,
    }


@extend_schema(tags=["fulfillment: node API"])
class TrackingFeedView(APIView):
    """A TMS or carrier feed by tracking number. A node token may post only for its own shipments."""

    authentication_classes = AUTH
    permission_classes = [NodeOrStaffPermission]
    change_perm = "fulfillment.add_trackingevent"

    @extend_schema(request=TrackingFeedSerializer, responses=TrackingResultSerializer, parameters=[IDEMPOTENCY])
    @idempotent
    def post(self, request):
        serializer = TrackingFeedSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        shipment = services.shipment_for_tracking(tracking_number=data["tracking_number"], carrier_code=data["carrier"])
        if is_node(request) and shipment.location_id != request.user.location_id:
            raise NotFound("no such shipment for this node")
        result = services.tracking_events_record(
            shipment=shipment.pk,
            events=tracking_inputs(data["events"]),
            source=data["source"],
            carrier_code=data["carrier"],
            actor=request_actor(request),
        )
        return Response(_tracking_answer(result))
