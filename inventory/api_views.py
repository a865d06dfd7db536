"""Inventory REST API: thin. Parse, call a service, answer. Domain errors become 4xx in orders/api.py."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from inventory import selectors, services
from inventory.errors import SnapshotInvalid
from inventory.filters import InboundShipmentFilter, StockLevelFilter, StockMovementFilter
from inventory.models import InboundLine, StockMovement
from inventory.pagination import InboundCursorPagination, MovementCursorPagination, StockLevelCursorPagination
from inventory.permissions import permission
from inventory.serializers import (
    AdjustmentSerializer,
    InboundShipmentSerializer,
    ReceiveResultSerializer,
    ReceiveSerializer,
    RowErrorsResponseSerializer,
    SnapshotParseSerializer,
    SnapshotRequestSerializer,
    SnapshotResultSerializer,
    StockLevelSerializer,
    StockMovementSerializer,
)

CanMoveStock = permission("inventory.add_stockmovement")
CanReceive = permission("inventory.change_inboundshipment")


class StockLevelViewSet(viewsets.ReadOnlyModelViewSet):
    """Stock per (SKU, location) with on hand, reserved, ATP and inbound. Keyset-paged (`cursor`)."""

    queryset = selectors.stock_level_grid()
    serializer_class = StockLevelSerializer
    filterset_class = StockLevelFilter
    pagination_class = StockLevelCursorPagination

    @extend_schema(
        summary="Bulk set on-hand from a WMS snapshot",
        description=(
            "Absolute sellable counts per (SKU code, location code). Each difference becomes an adjustment "
            "movement. Every row is validated first: any malformed, duplicate or unknown row answers 400 "
            "naming each offending row, and nothing is applied. A count below the units already reserved "
            "answers 409 the same way. A replay with the same idempotency key returns the original result "
            "and changes nothing. At a node with a count tolerance, a difference beyond it is not applied: it "
            "becomes a count proposal (``proposed``) and an exception case for a person."
        ),
        request=SnapshotRequestSerializer,
        responses={
            200: SnapshotResultSerializer,
            # Rows that fail validation are named one by one; a malformed body gets DRF's field errors.
            400: {
                "anyOf": [
                    {"$ref": "#/components/schemas/RowErrorsResponse"},
                    {
                        "type": "object",
                        "description": "Field errors: each field's messages (nested per row for rows)",
                        "additionalProperties": {"oneOf": [{"type": "array"}, {"type": "object"}, {"type": "string"}]},
                    },
                ]
            },
            409: RowErrorsResponseSerializer,
        },
    )
    @action(
        detail=False, methods=["post"], permission_classes=[CanMoveStock], pagination_class=None, filterset_class=None
    )
    def snapshot(self, request):
        parsed = SnapshotParseSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        data = parsed.validated_data
        try:
            result = services.stock_snapshot_apply(
                rows=data["rows"], idempotency_key=data["idempotency_key"], source=data["source"], actor=request.user
            )
        except SnapshotInvalid as exc:
            return Response({"detail": str(exc), "code": exc.code, "rows": exc.rows}, status=exc.http_status)
        body = {
            "snapshot_id": result.snapshot_id,
            "idempotency_key": result.idempotency_key,
            "replayed": result.replayed,
            "changed": result.changed,
            "proposed": result.proposed,
            "rows": result.rows,
        }
        return Response(SnapshotResultSerializer(body).data, status=status.HTTP_200_OK)


class StockMovementViewSet(viewsets.ReadOnlyModelViewSet):
    """The stock ledger: every change of on-hand stock, newest first."""

    queryset = selectors.movement_list()
    serializer_class = StockMovementSerializer
    filterset_class = StockMovementFilter
    pagination_class = MovementCursorPagination


class StockAdjustmentView(GenericAPIView):
    """A manual adjustment of sellable stock. The reason is required and kept as the audit note."""

    queryset = StockMovement.objects.none()
    serializer_class = AdjustmentSerializer
    permission_classes = [CanMoveStock]
    pagination_class = None
    filter_backends = []

    @extend_schema(
        request=AdjustmentSerializer,
        responses={
            201: StockMovementSerializer,
            200: OpenApiResponse(StockMovementSerializer, description="A replay: the original movement"),
            400: OpenApiResponse(description="Invalid input: the fields are named"),
            409: OpenApiResponse(description="Below zero or below reserved, or the key was used for another change"),
        },
    )
    def post(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        replay = StockMovement.objects.filter(idempotency_key=data["idempotency_key"]).exists()
        movement = services.stock_adjust(
            sku=data["sku"],
            location=data["location"],
            delta=data["delta"],
            reason=data["reason"],
            reference=data["reference"],
            idempotency_key=data["idempotency_key"],
            actor=request.user,
        )
        movement = selectors.movement_list().get(pk=movement.pk)
        return Response(
            StockMovementSerializer(movement).data, status=status.HTTP_200_OK if replay else status.HTTP_201_CREATED
        )


class InboundShipmentViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Purchase orders and ASNs: expected supply per location, received through `receive`."""

    serializer_class = InboundShipmentSerializer
    filterset_class = InboundShipmentFilter
    pagination_class = InboundCursorPagination
    queryset = selectors.inbound_list().prefetch_related(
        Prefetch("lines", queryset=InboundLine.objects.select_related("sku").order_by("id"))
    )

    def perform_create(self, serializer):
        data = serializer.validated_data
        shipment = services.inbound_create(
            reference=data["reference"],
            location_id=data["location"].pk,
            expected_at=data["expected_at"],
            kind=data["kind"],
            supplier=data.get("supplier", ""),
            lines=[
                services.InboundLineInput(
                    sku_id=line["sku"].pk,
                    quantity_expected=line["quantity_expected"],
                    expected_at=line.get("expected_at"),
                )
                for line in data["lines"]
            ],
            actor=self.request.user,
        )
        serializer.instance = self.get_queryset().get(pk=shipment.pk)

    @extend_schema(
        summary="Receive units against an inbound shipment",
        description=(
            "Adds sellable stock at the shipment's location, updates the received quantities and allocates "
            "backordered order lines waiting for those SKUs there, earliest ship-by first. A replay with the "
            "same idempotency key changes nothing."
        ),
        request=ReceiveSerializer,
        responses={200: ReceiveResultSerializer, 400: OpenApiResponse(description="Invalid lines or quantities")},
    )
    @action(detail=True, methods=["post"], permission_classes=[CanReceive], serializer_class=ReceiveSerializer)
    def receive(self, request, pk=None):
        serializer = ReceiveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        outcome = services.inbound_receive(
            shipment_id=int(pk),
            quantities={row["line"]: row["quantity"] for row in data["lines"]},
            idempotency_key=data["idempotency_key"],
            actor=request.user,
        )
        body = {
            "shipment": self.get_queryset().get(pk=outcome.shipment.pk),
            "replayed": outcome.replayed,
            "movements": selectors.movement_list().filter(pk__in=[m.pk for m in outcome.movements]).order_by("id"),
            "allocated_lines": outcome.allocated_lines,
        }
        return Response(ReceiveResultSerializer(body).data)
