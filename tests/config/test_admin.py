from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse


@pytest.mark.django_db
def test_every_admin_changelist_and_add_page_renders_for_a_superuser(client, django_user_model):
    # given
    root = django_user_model.objects.create_superuser(username="root", password="x-not-used-1")
    client.force_login(root)
    # when / then
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert client.get(changelist).status_code == 200, changelist
        if model_admin.has_add_permission(type("R", (), {"user": root})()):
            add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
            assert client.get(add).status_code == 200, add


@pytest.mark.django_db
def test_big_table_admins_never_count_the_whole_table(client, django_user_model, django_assert_max_num_queries):
    from config.kernel.admin import BigTableAdminMixin

    root = django_user_model.objects.create_superuser(username="root", password="x-not-used-1")
    client.force_login(root)
    for model, model_admin in admin.site._registry.items():
        if not isinstance(model_admin, BigTableAdminMixin):
            continue
        assert model_admin.show_full_result_count is False
        opts = model._meta
        with django_assert_max_num_queries(30) as captured:
            client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        for query in captured.captured_queries:
            sql = query["sql"].upper()
            assert not (sql.startswith("SELECT COUNT(*)") and "WHERE" not in sql and "LIMIT" not in sql), (
                opts.label,
                sql,
            )


@pytest.mark.django_db
def test_channel_location_admin_refuses_a_duplicate_and_mapping_releases_the_held_pickups(admin_client):
    from channels.models import ChannelLocation
    from orders import services as order_services
    from orders.models import Hold, HoldKind, OrderStatus
    from tests.factories import ChannelAccountFactory, LocationFactory, OrderFactory

    # given a channel store seen unmapped, and an open pickup order held for it
    account = ChannelAccountFactory(kind="shopify")
    store = LocationFactory(kind="store", can_pickup=True)
    ref = "gid://shopify/Location/2"
    seen = ChannelLocation.objects.create(account=account, external_id=ref, name="SF store")
    order = OrderFactory(account=account, status=OrderStatus.OPEN, service_level="pickup", pickup_location_ref=ref)
    order_services.hold_place(order=order, kind=HoldKind.UNMAPPED_LOCATION, reason="store not mapped", actor="sync")
    add = reverse("admin:channels_channellocation_add")
    # when the same channel location is added again: a form error, no second row
    response = admin_client.post(add, {"account": account.pk, "external_id": ref, "name": "again", "location": ""})
    assert response.status_code == 200 and response.context["adminform"].form.errors
    assert ChannelLocation.objects.filter(account=account, external_id=ref).count() == 1
    # when ops map it to the store
    change = reverse("admin:channels_channellocation_change", args=[seen.pk])
    response = admin_client.post(
        change, {"account": account.pk, "external_id": ref, "name": "SF store", "location": store.pk}
    )
    # then the held order has its store and no hold left
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.pickup_location == store and not order.on_hold
    assert not Hold.objects.filter(order=order, released_at__isnull=True).exists()
