"""Schemathesis against the live OpenAPI schema (served at /api/schema/) for every role: no 5xx on any
input, and every answer matches the schema (ASVS 5.1, 13.1, 13.2).

The examples per operation are bounded (WAYBILL_FUZZ_EXAMPLES, default 5) so it fits in `make test`;
raise it locally to dig deeper. Data exists for the generated ids to hit (orders, stock, shipments)."""

from __future__ import annotations

import os

import pytest
import schemathesis
import schemathesis.config
from django.contrib.auth.models import Group
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from config.security.tokens import RESOURCES, integration_token_create
from fulfillment import services as fulfillment_services
from fulfillment.models import Shipment
from orders.roles import ADMIN, OPS_AGENT, OPS_MANAGER, VIEWER
from tests.factories import InboundLineFactory

pytestmark = pytest.mark.django_db
EXAMPLES = int(os.environ.get("WAYBILL_FUZZ_EXAMPLES", "5"))
ROLES = [ADMIN, OPS_MANAGER, OPS_AGENT, VIEWER, "node", "anonymous"]
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture
def keep_connection():
    """Like Django's test client: the WSGI app must not close the test's connection after each request."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def role_headers(request, keep_connection, django_user_model, node, put_stock, order_for, skus, ups):
    # given some data the generated ids may hit: a routed order with a released shipment, stock, an inbound PO
    east = node("EAST", "10001")
    put_stock(skus[0], east, 5)
    order = order_for([(skus[0], 1)])
    fulfillment_services.orders_route(order_ids=[order.pk], actor="router")
    assert Shipment.objects.filter(order=order).exists()
    InboundLineFactory(sku=skus[1], shipment__location=east)
    role = request.param
    if role == "anonymous":
        return {}
    if role == "node":
        key = fulfillment_services.node_token_create(location=east, name="fuzz wms", actor="test")[1]
        return {"Authorization": f"Node {key}"}
    user = django_user_model.objects.create_user(username=f"fuzz-{role}".replace(" ", "-"), password=None)
    user.groups.add(Group.objects.get(name=role))
    scopes = [f"{resource}:write" for resource in RESOURCES]
    key = integration_token_create(user_id=user.pk, name="fuzz", scopes=scopes, days=1, actor="test")[1]
    return {"Authorization": f"Bearer {key}"}


def _live_schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def _schema(*, coverage: bool):
    config = schemathesis.config.SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": coverage}}})
    loaded = schemathesis.openapi.from_dict(_live_schema(), config=config)
    loaded.app = get_wsgi_application()
    return loaded


# The coverage phase (boundary values: the largest integers, empty and oversize strings, every enum, missing
# fields) for the roles that pass the permission checks everywhere; random fuzzing for every role.
with_boundaries = _schema(coverage=True)
fuzz_only = _schema(coverage=False)


def test_the_fuzzed_schema_is_the_one_served(api_client, admin_user):
    # The schema the cases are generated from is what /api/schema/ serves (so the fuzzing follows the live API).
    import json

    api_client.force_authenticate(admin_user)
    served = api_client.get("/api/schema/?format=json")
    assert served.status_code == 200
    assert json.loads(served.content)["paths"] == json.loads(json.dumps(_live_schema()["paths"]))


HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("role_headers", [ADMIN, "node"], indirect=True)
@with_boundaries.parametrize()
@HYPOTHESIS
def test_boundary_inputs_get_no_5xx_and_answers_inside_the_schema(case, role_headers):
    case.call_and_validate(headers=role_headers, checks=CHECKS)


@pytest.mark.parametrize("role_headers", ROLES, indirect=True)
@fuzz_only.parametrize()
@HYPOTHESIS
def test_random_inputs_get_no_5xx_and_answers_inside_the_schema_for_every_role(case, role_headers):
    case.call_and_validate(headers=role_headers, checks=CHECKS)
