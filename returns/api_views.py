"""The returns 3PL API: RMAs headed to a node, and the receipts and inspections the node posts.

A node (a returns 3PL, a store, the DC) authenticates with its node token (``Authorization: Node <key>``)
and sends an ``Idempotency-Key`` with every POST (required for a node token): the same receipt posted
twice is applied once. Staff may call the same endpoints with the returns model permissions.
"""

from __future__ import annotations

from django.db.models import Prefetch, Q
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from fulfillment.api import NodeOrStaffPermission, idempotent, is_node, request_actor
from fulfillment.api_views import AUTH
from inventory.models import Location
from returns import services
from returns.models import ReturnAuthorization, ReturnLine
from returns.serializers import (
    InspectionSerializer,
    ReceiptResultSerializer,
    ReceiptSerializer,
    RmaSerializer,
)

IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="Required with a node token. Replaying a request with the same key returns the first answer "
    "and changes nothing (the same receipt posted twice restocks once).",
)


class RmaCursorPagination(CursorPagination):
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"
    ordering = ("id",)


@extend_schema(tags=["returns: node API"])
class RmaViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """RMAs by their number. A node token lists the open RMAs headed to its node (or to no node yet); it may
    post receipts for any RMA (a return may come back anywhere). `?status=` filters."""

    authentication_classes = AUTH
    permission_classes = [NodeOrStaffPermission]
    serializer_class = RmaSerializer
    pagination_class = RmaCursorPagination
    lookup_field = "rma_number"
    lookup_value_regex = "[^/]+"
    view_perm = "returns.view_returnauthorization"
    change_perm = "returns.change_returnline"
    filterset_fields = ["status"]

    def get_queryset(self):
        qs = ReturnAuthorization.objects.select_related("order", "return_location").prefetch_related(
            "order__account",
            Prefetch("lines", queryset=ReturnLine.objects.select_related("order_line__sku").order_by("pk")),
        )
        if is_node(self.request) and self.action == "list":
            qs = qs.filter(Q(return_location_id=self.request.user.location_id) | Q(return_location__isnull=True))
        return qs.order_by("id")

    def _rma(self) -> ReturnAuthorization:
        try:
            return ReturnAuthorization.objects.only("pk").get(rma_number=self.kwargs["rma_number"])
        except ReturnAuthorization.DoesNotExist:
            raise NotFound(f"no RMA {self.kwargs['rma_number']!r}") from None

    def _key(self, request) -> str:
        key = request.headers.get("Idempotency-Key", "").strip()
        if is_node(request) and not key:
            raise exceptions.ValidationError({"Idempotency-Key": "required with a node token"})
        scope = f"node:{request.user.location_id}" if is_node(request) else f"user:{request.user.pk}"
        return f"api:{scope}:{key}" if key else ""

    def _location_id(self, request, code: str | None) -> int:
        if is_node(request):
            if code and code != request.user.location_code:
                raise exceptions.ValidationError({"location": "a node token receives at its own node only"})
            return request.user.location_id
        if not code:
            raise exceptions.ValidationError({"location": "name the node the units arrived at (its code)"})
        location = Location.objects.filter(code=code).only("pk").first()
        if location is None:
            raise exceptions.ValidationError({"location": f"unknown node {code!r}"})
        return location.pk

    def _answer(self, result) -> Response:
        rma = self.get_queryset().get(pk=result.rma.pk)
        return Response(
            {
                "receipt": result.receipt.pk,
                "replayed": result.replayed,
                "units": result.units,
                "rma": RmaSerializer(rma).data,
            }
        )

    @extend_schema(request=ReceiptSerializer, responses=ReceiptResultSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"])
    @idempotent
    def receipts(self, request, rma_number=None):
        """Units that arrived, each with a disposition (pending = inspect later). All or nothing: an unknown
        SKU, a quantity above what is expected or an unknown disposition is refused and nothing is written."""
        serializer = ReceiptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        rma = self._rma()
        result = services.rma_receive(
            rma_id=rma.pk,
            location_id=self._location_id(request, data.get("location")),
            items=[
                services.ReceiveItem(
                    quantity=item["quantity"],
                    disposition=item["disposition"],
                    return_line_id=item.get("return_line"),
                    sku=item.get("sku") or "",
                    note=item.get("note") or "",
                )
                for item in data["items"]
            ],
            actor=request_actor(request),
            idempotency_key=self._key(request),
        )
        return self._answer(result)

    @extend_schema(request=InspectionSerializer, responses=ReceiptResultSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"])
    @idempotent
    def inspections(self, request, rma_number=None):
        """Dispositions for units received earlier as pending (with a node token: those received at its node)."""
        serializer = InspectionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rma = self._rma()
        result = services.rma_inspect(
            rma_id=rma.pk,
            items=[
                services.InspectItem(
                    quantity=item["quantity"],
                    disposition=item["disposition"],
                    return_line_id=item.get("return_line"),
                    sku=item.get("sku") or "",
                    note=item.get("note") or "",
                )
                for item in serializer.validated_data["items"]
            ],
            actor=request_actor(request),
            idempotency_key=self._key(request),
            # A node gives dispositions to the units it holds, not to those received elsewhere.
            location_id=request.user.location_id if is_node(request) else None,
        )
        return self._answer(result)
