"""A fresh `migrate` gives each role group exactly the permissions orders/roles.py lists."""

from __future__ import annotations

import psycopg
import pytest

from orders.roles import ADMIN, AGENT_EXTRA, MANAGER_EXTRA, OPS_AGENT, OPS_MANAGER, VIEWER, WAYBILL_APPS
from tests.security.helpers import _admin_dsn, manage, scratch_database

pytestmark = pytest.mark.django_db(transaction=True)


def _grants(dbname: str) -> tuple[dict[str, set[tuple[str, str]]], set[tuple[str, str]]]:
    with psycopg.connect(**{**_admin_dsn(), "dbname": dbname}) as conn:
        rows = conn.execute(
            "SELECT g.name, ct.app_label, p.codename FROM auth_group g"
            " JOIN auth_group_permissions gp ON gp.group_id = g.id"
            " JOIN auth_permission p ON p.id = gp.permission_id"
            " JOIN django_content_type ct ON ct.id = p.content_type_id"
        ).fetchall()
        every = {
            (app, code)
            for app, code in conn.execute(
                "SELECT ct.app_label, p.codename FROM auth_permission p"
                " JOIN django_content_type ct ON ct.id = p.content_type_id"
            ).fetchall()
        }
    grants: dict[str, set] = {}
    for group, app, code in rows:
        grants.setdefault(group, set()).add((app, code))
    return grants, every


def test_a_fresh_migrate_fills_every_role_completely():
    # given an empty database
    with scratch_database() as name:
        # when it is migrated once, as `make demo` does on a fresh clone
        result = manage("migrate", "--no-input", database=name)
        assert result.returncode == 0, result.stderr[-3000:]
        grants, every = _grants(name)
    # then each group has exactly what roles.py lists, for every model of every Waybill app
    ours = {key for key in every if key[0] in WAYBILL_APPS}
    views = {key for key in ours if key[1].startswith("view_")}
    assert grants[ADMIN] == every
    assert grants[VIEWER] == views
    assert grants[OPS_AGENT] == views | (AGENT_EXTRA & ours)
    assert grants[OPS_MANAGER] == views | (MANAGER_EXTRA & ours)
    # and nothing roles.py names is missing from the database (a renamed model would hide here)
    assert ours >= AGENT_EXTRA | MANAGER_EXTRA
    assert ("fulfillment", "add_nodeapitoken") in grants[OPS_MANAGER]
