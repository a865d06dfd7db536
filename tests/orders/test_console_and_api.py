from __future__ import annotations

import re

import pytest
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from orders.models import Hold, OrderStatus
from tests.factories import ChannelAccountFactory, OrderFactory, OrderLineFactory


def _walk(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.callback


def test_every_console_view_names_a_permission():
    # Deny by default: each console view is a PermissionRequiredMixin with a permission, or a DRF
    # view (its default permission classes deny), or admin/auth/login.
    for route, callback in _walk(get_resolver().url_patterns):
        if route.startswith(("admin/", "login/", "logout/", "webhooks/")) or route == "":
            continue
        view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        assert view_class is not None, route
        if hasattr(view_class, "permission_classes"):
            assert view_class.permission_classes, route
            continue
        assert issubclass(view_class, PermissionRequiredMixin), route
        initkwargs = getattr(callback, "view_initkwargs", {})
        assert view_class(**initkwargs).get_permission_required(), route


@pytest.mark.django_db
def test_anonymous_console_users_are_sent_to_login(client):
    response = client.get(reverse("orders:list"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.django_db
def test_anonymous_api_calls_get_401(api_client):
    response = api_client.get("/api/v1/orders/")
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


@pytest.mark.django_db
def test_signed_in_user_without_a_role_gets_403(client, api_client, django_user_model):
    nobody = django_user_model.objects.create_user(username="nobody", password="x-not-used-1")
    client.force_login(nobody)
    api_client.force_authenticate(nobody)
    assert client.get(reverse("orders:list")).status_code == 403
    assert api_client.get("/api/v1/orders/").status_code == 403


@pytest.mark.django_db
def test_viewer_reads_but_cannot_change(client, viewer):
    # given
    order = OrderFactory()
    client.force_login(viewer)
    # when / then: reads work
    assert client.get(reverse("orders:list")).status_code == 200
    assert client.get(reverse("orders:detail", args=[order.pk])).status_code == 200
    # and a write is refused and leaves nothing behind
    response = client.post(reverse("orders:hold-place", args=[order.pk]), {"kind": "manual", "reason": "x"})
    assert response.status_code == 403
    assert not Hold.objects.exists()


@pytest.mark.django_db
def test_agent_places_and_releases_a_hold_from_the_order_page(client, agent):
    order = OrderFactory()
    client.force_login(agent)
    response = client.post(reverse("orders:hold-place", args=[order.pk]), {"kind": "fraud", "reason": "Velocity"})
    assert response.status_code == 302
    hold = Hold.objects.get(order=order)
    assert hold.placed_by == "agent"
    response = client.post(reverse("orders:hold-release", args=[hold.pk]), {"reason": "Cleared"})
    assert response.status_code == 302
    hold.refresh_from_db()
    assert hold.released_by == "agent"
    # a second release says why, and changes nothing
    response = client.post(reverse("orders:hold-release", args=[hold.pk]), {"reason": "Again"}, follow=True)
    assert b"already released" in response.content


@pytest.mark.django_db
def test_hold_form_without_reason_is_a_form_error(client, agent):
    order = OrderFactory()
    client.force_login(agent)
    response = client.post(reverse("orders:hold-place", args=[order.pk]), {"kind": "fraud", "reason": ""})
    assert response.status_code == 400
    assert not Hold.objects.exists()


@pytest.mark.django_db
def test_order_list_query_count_does_not_grow_with_orders(client, viewer, django_assert_max_num_queries):
    client.force_login(viewer)
    account = ChannelAccountFactory()
    OrderFactory.create_batch(3, account=account)
    with django_assert_max_num_queries(6) as few:
        assert client.get(reverse("orders:list")).status_code == 200
    OrderFactory.create_batch(40, account=account)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("orders:list"))
    assert response.status_code == 200
    sql = " ".join(q["sql"] for q in few.captured_queries).upper()
    assert "COUNT(" not in sql


@pytest.mark.django_db
def test_order_list_filters_search_and_pages(client, viewer):
    client.force_login(viewer)
    amazon = ChannelAccountFactory(name="amazon-us", kind="amazon")
    shopify = ChannelAccountFactory(name="shopify-main", kind="shopify")
    target = OrderFactory(account=shopify, status=OrderStatus.BACKORDERED, external_reference="#1001")
    OrderFactory.create_batch(55, account=amazon, status=OrderStatus.OPEN)
    held = OrderFactory(account=amazon, status=OrderStatus.OPEN, on_hold=True)
    line = OrderLineFactory(order=target, channel_sku="MUG-RED")

    def listed(**params):
        return {o.pk for o in client.get(reverse("orders:list"), params).context["orders"]}

    assert listed(channel="shopify") == {target.pk}
    assert listed(status=["backordered"]) == {target.pk}
    assert listed(on_hold="true") == {held.pk}
    assert listed(q="#1001") == {target.pk}
    assert listed(q=line.channel_sku) == {target.pk}
    first = client.get(reverse("orders:list"), {"channel": "amazon"})
    assert len(first.context["orders"]) == 50 and first.context["next_url"]
    second = client.get(first.context["next_url"])
    assert len(second.context["orders"]) == 6
    assert not {o.pk for o in first.context["orders"]} & {o.pk for o in second.context["orders"]}


@pytest.mark.django_db
def test_htmx_request_renders_only_the_results_partial(client, viewer):
    client.force_login(viewer)
    OrderFactory()
    full = client.get(reverse("orders:list"))
    partial = client.get(reverse("orders:list"), headers={"HX-Request": "true"})
    assert b"<html" in full.content and b'id="order-results"' in full.content
    assert b"<html" not in partial.content and b"<table" in partial.content


@pytest.mark.django_db
def test_bad_filter_input_is_reported_not_crashed(client, viewer):
    client.force_login(viewer)
    response = client.get(reverse("orders:list"), {"status": "teleported", "ship_by_after": "yesterday-ish"})
    assert response.status_code == 200
    assert response.context["orders"] == []
    assert b"Check the filters" in response.content


@pytest.mark.django_db
def test_api_lists_filters_and_details_orders(api_client, viewer):
    api_client.force_authenticate(viewer)
    order = OrderFactory(status=OrderStatus.ALLOCATED)
    OrderLineFactory(order=order, quantity=3)
    OrderFactory(status=OrderStatus.OPEN)
    listing = api_client.get("/api/v1/orders/", {"status": "allocated"}).json()
    assert [row["id"] for row in listing["results"]] == [order.pk]
    assert "next" in listing and "count" not in listing
    detail = api_client.get(f"/api/v1/orders/{order.pk}/").json()
    assert detail["lines"][0]["quantity"] == 3


@pytest.mark.django_db
def test_api_is_read_only_for_orders(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    assert api_client.post("/api/v1/orders/", {}, format="json").status_code == 405


@pytest.mark.django_db
def test_api_docs_page_and_schema_load_assets_locally(client, viewer):
    client.force_login(viewer)
    docs = client.get(reverse("api-docs"))
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "drf_spectacular_sidecar" in html
    # Every asset the page loads is served from this site: no absolute or
    # protocol-relative URL in any src/href (a CDN would need one).
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert assets, "the docs page loads no assets at all"
    assert [url for url in assets if re.match(r"^(?:[a-z]+:)?//", url, re.I)] == []
    schema = client.get(reverse("api-schema"))
    assert schema.status_code == 200 and b"/api/v1/orders/" in schema.content


@pytest.mark.django_db
def test_exception_queue_screen_works_cases(client, agent):
    from orders import services

    case, _ = services.exception_case_open(kind="no_node", title="No node for ORDER-1", actor="router")
    client.force_login(agent)
    assert b"No node for ORDER-1" in client.get(reverse("orders:exceptions")).content
    client.post(reverse("orders:exception-action", args=[case.pk, "resolve"]), {"note": "Moved stock"})
    case.refresh_from_db()
    assert case.status == "resolved" and case.resolved_by == "agent"


@pytest.mark.django_db
def test_every_navigation_section_renders(client, viewer):
    from orders.context_processors import NAVIGATION

    client.force_login(viewer)
    for _, label, url_name in NAVIGATION:
        response = client.get(reverse(url_name))
        assert response.status_code == 200, label
