from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from orders.roles import ADMIN, OPS_AGENT, OPS_MANAGER, VIEWER


@pytest.mark.django_db
def test_roles_exist_with_their_permissions():
    perms = {
        g.name: {f"{p.content_type.app_label}.{p.codename}" for p in g.permissions.all()}
        for g in Group.objects.prefetch_related("permissions__content_type")
    }
    assert {ADMIN, OPS_MANAGER, OPS_AGENT, VIEWER} <= set(perms)
    assert all(p.split(".")[1].startswith("view_") for p in perms[VIEWER])
    assert "orders.view_order" in perms[VIEWER]
    assert "orders.add_hold" in perms[OPS_AGENT] and "orders.add_hold" not in perms[VIEWER]
    assert "orders.override_order" in perms[OPS_MANAGER] and "orders.override_order" not in perms[OPS_AGENT]
    # Only Admin configures channel accounts and credentials.
    for role in (VIEWER, OPS_AGENT, OPS_MANAGER):
        assert "channels.change_channelaccount" not in perms[role]
        assert "channels.manage_credentials" not in perms[role]
    assert {"channels.change_channelaccount", "channels.manage_credentials"} <= perms[ADMIN]


@pytest.mark.django_db
def test_viewer_cannot_open_the_channel_account_admin(client, viewer, manager):
    for user in (viewer, manager):
        user.is_staff = True
        user.save()
        client.force_login(user)
        assert client.get("/admin/channels/channelaccount/").status_code == 403
