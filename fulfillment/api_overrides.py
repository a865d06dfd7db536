"""The orders API's write endpoints: every manual override on an order, and bulk actions on the exception
queue. Role-checked (each action names its permission), ``Idempotency-Key`` honoured (a replay returns
the first answer and changes nothing), in the OpenAPI schema under "orders: overrides".

They live here, not in orders, because several call fulfilment's services (cancel, reroute, backorder,
resend) and the idempotency records are fulfilment's; the services they call are the owning app's.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from config.kernel.limits import ID_MAX, INT32_MAX
from config.security.tokens import IntegrationTokenAuthentication
from fulfillment.api import idempotent
from fulfillment.api_views import IDEMPOTENCY
from fulfillment.services import order_reroute, overrides
from orders import selectors as order_selectors
from orders import services as order_services
from orders.filters import ExceptionCaseFilter
from orders.models import CancelInitiator, ExceptionCase, Hold, HoldKind, Order
from orders.pagination import ExceptionCaseCursorPagination
from orders.serializers import OrderDetailSerializer

TAG = ["orders: overrides"]


class ActionPermission(BasePermission):
    """The permission each action names in the view's ``action_perms`` (deny when it names none)."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        perm = view.action_perms.get(view.action)
        return bool(perm) and user.has_perm(perm)


class HoldPlaceSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=HoldKind.choices)
    reason = serializers.CharField(max_length=2000)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class CancelLineSerializer(serializers.Serializer):
    order_line = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    quantity = serializers.IntegerField(min_value=1, max_value=INT32_MAX)


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="Sent to the channel with the cancellation")
    initiator = serializers.ChoiceField(choices=CancelInitiator.choices, default=CancelInitiator.SELLER)
    lines = CancelLineSerializer(many=True, required=False, help_text="Omit to cancel every open unit")

    def validate_lines(self, value):
        seen = set()
        for line in value:
            if line["order_line"] in seen:
                raise serializers.ValidationError(f"order line {line['order_line']} is named twice")
            seen.add(line["order_line"])
        return value


class CancelResultSerializer(serializers.Serializer):
    cancelled = serializers.DictField(child=serializers.IntegerField(), help_text="order line id -> units")
    shipments = serializers.ListField(child=serializers.IntegerField())
    settled_cases = serializers.ListField(child=serializers.IntegerField())
    order_status = serializers.CharField()


class RerouteSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)
    location = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=ID_MAX, help_text="Force this node (id)"
    )


class ShipToEditSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)
    name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    company = serializers.CharField(max_length=255, required=False, allow_blank=True)
    line1 = serializers.CharField(max_length=255, required=False, allow_blank=True)
    line2 = serializers.CharField(max_length=255, required=False, allow_blank=True)
    line3 = serializers.CharField(max_length=255, required=False, allow_blank=True)
    city = serializers.CharField(max_length=128, required=False, allow_blank=True)
    region = serializers.CharField(max_length=128, required=False, allow_blank=True)
    postal_code = serializers.CharField(max_length=32, required=False, allow_blank=True)
    country_code = serializers.CharField(max_length=2, required=False, allow_blank=True)
    phone = serializers.CharField(max_length=64, required=False, allow_blank=True)
    email = serializers.CharField(max_length=254, required=False, allow_blank=True)


class ServiceLevelSerializer(serializers.Serializer):
    shipping_method = serializers.CharField(max_length=64)
    reason = serializers.CharField(max_length=2000)


class SplitSerializer(serializers.Serializer):
    shipment = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    order_lines = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX), allow_empty=False, max_length=5000
    )
    reason = serializers.CharField(max_length=2000)


class MergeSerializer(serializers.Serializer):
    shipments = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX), min_length=2, max_length=500
    )
    reason = serializers.CharField(max_length=2000)


class ResendSerializer(serializers.Serializer):
    shipment = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    reason = serializers.CharField(max_length=2000)


def _body(request, serializer_class) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@extend_schema(tags=TAG)
class OrderOverrideViewSet(viewsets.GenericViewSet):
    """Manual overrides on one order. Each writes one audit event with actor, reason, before and after."""

    authentication_classes = [IntegrationTokenAuthentication, SessionAuthentication]
    token_resource = "orders"  # noqa: S105 - the scope its integration tokens need, not a secret
    permission_classes = [ActionPermission]
    # An id that is not a number is no order: 404 at the router, never a 500 in the lookup.
    lookup_value_regex = r"[0-9]+"
    queryset = Order.objects.all()
    serializer_class = OrderDetailSerializer
    action_perms = {
        "hold": "orders.add_hold",
        "release_hold": "orders.change_hold",
        "cancel": "orders.override_order",
        "reroute": "orders.override_order",
        "backorder": "orders.override_order",
        "ship_to": "orders.override_order",
        "service_level": "orders.override_order",
        "resend_confirmation": "orders.override_order",
        "split_shipment": "orders.override_order",
        "merge_shipments": "orders.override_order",
    }

    def _order_id(self) -> int:
        return get_object_or_404(Order.objects.only("pk"), pk=self.kwargs["pk"]).pk

    def _answer(self, order_id: int, status: int = 200) -> Response:
        return Response(OrderDetailSerializer(order_selectors.order_detail().get(pk=order_id)).data, status=status)

    @extend_schema(request=HoldPlaceSerializer, responses=OrderDetailSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"], url_path="holds")
    @idempotent
    def hold(self, request, pk=None):
        """Place a hold: the order is not routed while it is held."""
        data = _body(request, HoldPlaceSerializer)
        order_id = self._order_id()
        order_services.hold_place(order=order_id, kind=data["kind"], reason=data["reason"], actor=request.user)
        return self._answer(order_id, status=201)

    @extend_schema(request=ReasonSerializer, responses=OrderDetailSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"], url_path=r"holds/(?P<hold_id>\d+)/release")
    @idempotent
    def release_hold(self, request, pk=None, hold_id=None):
        data = _body(request, ReasonSerializer)
        hold = get_object_or_404(Hold.objects.only("pk", "order_id"), pk=hold_id, order_id=self._order_id())
        order_services.hold_release(hold=hold.pk, reason=data["reason"], actor=request.user)
        return self._answer(hold.order_id)

    @extend_schema(request=CancelSerializer, responses=CancelResultSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"])
    @idempotent
    def cancel(self, request, pk=None):
        """Cancel units (``lines``) or the whole order; the channel is told through the outbox. All or
        nothing: units being picked, or more than are open, refuse the call (409/400) and change nothing."""
        data = _body(request, CancelSerializer)
        lines = data.get("lines")
        result = overrides.order_units_cancel(
            order_id=self._order_id(),
            quantities={line["order_line"]: line["quantity"] for line in lines} if lines else None,
            reason=data["reason"],
            initiator=data["initiator"],
            actor=request.user,
        )
        return Response(
            {
                "cancelled": {str(k): v for k, v in result.cancelled.items()},
                "shipments": result.shipments,
                "settled_cases": result.settled_cases,
                "order_status": result.order_status,
            }
        )

    @extend_schema(request=RerouteSerializer, responses=OrderDetailSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"])
    @idempotent
    def reroute(self, request, pk=None):
        """Route the order again (its unshipped shipments cancelled), optionally forced to one node."""
        data = _body(request, RerouteSerializer)
        order_id = self._order_id()
        order_reroute(order_id=order_id, reason=data["reason"], location_id=data.get("location"), actor=request.user)
        return self._answer(order_id)

    @extend_schema(request=ReasonSerializer, responses=OrderDetailSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"])
    @idempotent
    def backorder(self, request, pk=None):
        """Let the open lines wait for stock instead of a routing exception; the order is routed again."""
        data = _body(request, ReasonSerializer)
        order_id = self._order_id()
        overrides.order_backorder(order_id=order_id, reason=data["reason"], actor=request.user)
        return self._answer(order_id)

    @extend_schema(request=ShipToEditSerializer, responses=OrderDetailSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"], url_path="ship-to")
    @idempotent
    def ship_to(self, request, pk=None):
        """Edit the ship-to (fields sent are changed; the old values are kept in the event)."""
        data = dict(_body(request, ShipToEditSerializer))
        reason = data.pop("reason")
        order_id = self._order_id()
        order_services.order_ship_to_edit(order=order_id, changes=data, reason=reason, actor=request.user)
        return self._answer(order_id)

    @extend_schema(request=ServiceLevelSerializer, responses=OrderDetailSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"], url_path="service-level")
    @idempotent
    def service_level(self, request, pk=None):
        data = _body(request, ServiceLevelSerializer)
        order_id = self._order_id()
        order_services.order_shipping_method_set(
            order=order_id, shipping_method=data["shipping_method"], reason=data["reason"], actor=request.user
        )
        return self._answer(order_id)

    @extend_schema(request=ResendSerializer, responses=OrderDetailSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"], url_path="resend-confirmation")
    @idempotent
    def resend_confirmation(self, request, pk=None):
        """Queue one of the order's shipped shipments' ship confirmation for the channel again."""
        data = _body(request, ResendSerializer)
        order_id = self._order_id()
        if not Order.objects.filter(pk=order_id, shipments__pk=data["shipment"]).exists():
            raise serializers.ValidationError({"shipment": f"shipment {data['shipment']} is not this order's"})
        overrides.shipment_confirmation_resend(shipment_id=data["shipment"], reason=data["reason"], actor=request.user)
        return self._answer(order_id)

    def _own_shipments(self, order_id: int, ids: list[int]) -> None:
        found = set(Order.objects.filter(pk=order_id, shipments__pk__in=ids).values_list("shipments__pk", flat=True))
        missing = sorted(set(ids) - found)
        if missing:
            raise serializers.ValidationError({"shipment": f"shipment(s) {missing} are not this order's"})

    @extend_schema(request=SplitSerializer, responses=OrderDetailSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"], url_path="split-shipment")
    @idempotent
    def split_shipment(self, request, pk=None):
        """Move whole lines of a shipment the node has not started to a new shipment at the same node."""
        data = _body(request, SplitSerializer)
        order_id = self._order_id()
        self._own_shipments(order_id, [data["shipment"]])
        overrides.shipment_split(
            shipment_id=data["shipment"], order_line_ids=data["order_lines"], reason=data["reason"], actor=request.user
        )
        return self._answer(order_id)

    @extend_schema(request=MergeSerializer, responses=OrderDetailSerializer, parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["post"], url_path="merge-shipments")
    @idempotent
    def merge_shipments(self, request, pk=None):
        """Merge shipments of this order at one node, none started, into one parcel."""
        data = _body(request, MergeSerializer)
        order_id = self._order_id()
        self._own_shipments(order_id, data["shipments"])
        overrides.shipments_merge(shipment_ids=data["shipments"], reason=data["reason"], actor=request.user)
        return self._answer(order_id)


class CaseSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", default=None, read_only=True)
    # The case's account by id (held by id: no relation to serialise).
    account = serializers.IntegerField(source="account_id", default=None, read_only=True, allow_null=True)

    class Meta:
        model = ExceptionCase
        fields = [
            "id",
            "kind",
            "severity",
            "status",
            "title",
            "detail",
            "order",
            "account",
            "sku",
            "owner",
            "due_at",
            "created_at",
            "resolved_at",
            "resolved_by",
            "resolution_note",
        ]
        read_only_fields = fields


class CaseBulkSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["assign", "acknowledge", "resolve"])
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX), required=False, max_length=5000
    )
    filters = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="Instead of ids: every case the queue's filters match (status, kind, severity, sku, account…)",
    )
    note = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    owner = serializers.CharField(required=False, allow_blank=True, help_text="Username to assign to; empty unassigns")

    def validate(self, data):
        if bool(data.get("ids")) == bool(data.get("filters")):
            raise serializers.ValidationError("send either ids or filters")
        if data["action"] == "resolve" and not (data.get("note") or "").strip():
            raise serializers.ValidationError({"note": "resolving cases needs a resolution note"})
        return data


class CaseFixSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=list(overrides.CASE_FIX_ACTIONS))
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX), required=False, max_length=5000
    )
    filters = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="Instead of ids: every case the queue's filters match (a root-cause group: kind and sku…)",
    )
    reason = serializers.CharField(max_length=2000, help_text="Audited; a cancel's reason is sent to the channel")
    location = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=ID_MAX, help_text="Reroute to this node (id)"
    )

    def validate(self, data):
        if bool(data.get("ids")) == bool(data.get("filters")):
            raise serializers.ValidationError("send either ids or filters")
        return data


def _case_ids(request, data) -> list[int]:
    """The cases a bulk call names: its ``ids``, or every case its queue ``filters`` match."""
    if not data.get("filters"):
        return data["ids"]
    filterset = ExceptionCaseFilter(
        data["filters"],
        queryset=order_selectors.exception_cases_by_urgency(include_resolved=bool(data["filters"].get("status"))),
        request=request,
    )
    if not filterset.is_valid():
        raise serializers.ValidationError({"filters": filterset.errors})
    return list(filterset.qs.order_by("pk").values_list("pk", flat=True)[: order_services.MAX_BULK_ITEMS + 1])


class BulkResultSerializer(serializers.Serializer):
    action = serializers.CharField()
    done = serializers.ListField(child=serializers.IntegerField())
    failed = serializers.DictField(child=serializers.CharField(), help_text="case id -> why it was refused")


@extend_schema(tags=TAG)
class ExceptionCaseViewSet(viewsets.ReadOnlyModelViewSet):
    """The exception queue, most urgent first, filtered like the console's; bulk assign, acknowledge, resolve."""

    authentication_classes = [IntegrationTokenAuthentication, SessionAuthentication]
    token_resource = "orders"  # noqa: S105 - the scope its integration tokens need, not a secret
    permission_classes = [ActionPermission]
    serializer_class = CaseSerializer
    lookup_value_regex = r"[0-9]+"
    filterset_class = ExceptionCaseFilter
    pagination_class = ExceptionCaseCursorPagination
    action_perms = {
        "list": "orders.view_exceptioncase",
        "retrieve": "orders.view_exceptioncase",
        "bulk": "orders.change_exceptioncase",
        "fix": "orders.override_order",
    }

    def get_queryset(self):
        include_resolved = bool(self.request.query_params.get("status"))
        return order_selectors.exception_cases_by_urgency(include_resolved=include_resolved).order_by(
            "urgency_at", "impact", "id"
        )

    @extend_schema(request=CaseBulkSerializer, responses=BulkResultSerializer, parameters=[IDEMPOTENCY])
    @action(detail=False, methods=["post"])
    @idempotent
    def bulk(self, request):
        """Each case in its own transaction: those refused are named in ``failed``, the others are done."""
        data = _body(request, CaseBulkSerializer)
        ids = _case_ids(request, data)
        owner = None
        if data["action"] == "assign" and data.get("owner"):
            owner = get_user_model().objects.filter(username=data["owner"], is_active=True).first()
            if owner is None:
                raise serializers.ValidationError({"owner": f"no active user {data['owner']!r}"})
        result = order_services.exception_cases_bulk(
            case_ids=ids, action=data["action"], note=data.get("note", ""), owner=owner, actor=request.user
        )
        return Response(
            {"action": result.action, "done": result.done, "failed": {str(k): v for k, v in result.failed.items()}}
        )

    @extend_schema(request=CaseFixSerializer, responses=BulkResultSerializer, parameters=[IDEMPOTENCY])
    @action(detail=False, methods=["post"])
    @idempotent
    def fix(self, request):
        """One fix for a root-cause group: each case's order rerouted (to ``location`` when named),
        backordered, or cancelled with ``reason`` told to the channel, in its own transaction; the cases it
        settles are resolved, those it does not apply to are named in ``failed``."""
        data = _body(request, CaseFixSerializer)
        result = overrides.exception_cases_fix_bulk(
            case_ids=_case_ids(request, data),
            action=data["action"],
            reason=data["reason"],
            location_id=data.get("location"),
            actor=request.user,
        )
        return Response(
            {"action": result.action, "done": result.done, "failed": {str(k): v for k, v in result.failed.items()}}
        )
