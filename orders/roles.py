"""The four roles and their permissions, defined once: the data migration and post_migrate use it.

Viewer reads everything; Ops agent works the queues; Ops manager also configures operations;
Admin has every permission, channel accounts and credentials included.
"""

from __future__ import annotations

WAYBILL_APPS = ("orders", "inventory", "fulfillment", "channels", "returns", "scorecards")

ADMIN = "Admin"
OPS_MANAGER = "Ops manager"
OPS_AGENT = "Ops agent"
VIEWER = "Viewer"
ROLES = (ADMIN, OPS_MANAGER, OPS_AGENT, VIEWER)

# (app_label, codename) granted on top of every view_ permission of the Waybill apps.
AGENT_EXTRA = {
    ("orders", "change_order"),
    ("orders", "add_hold"),
    ("orders", "change_hold"),
    ("orders", "add_exceptioncase"),
    ("orders", "change_exceptioncase"),
    ("inventory", "add_stockmovement"),
    ("inventory", "change_inboundshipment"),
    ("fulfillment", "change_shipment"),
    ("fulfillment", "add_trackingevent"),
    ("fulfillment", "change_shipmentline"),
    ("returns", "add_returnauthorization"),
    ("returns", "change_returnauthorization"),
    ("returns", "change_returnline"),
    ("channels", "change_inboundevent"),
    ("channels", "change_outboxmessage"),
}
MANAGER_EXTRA = AGENT_EXTRA | {
    ("orders", "override_order"),
    ("inventory", "add_sku"),
    ("inventory", "change_sku"),
    ("inventory", "add_location"),
    ("inventory", "change_location"),
    ("inventory", "add_inboundshipment"),
    ("inventory", "add_inboundline"),
    ("inventory", "change_inboundline"),
    ("fulfillment", "add_carrier"),
    ("fulfillment", "change_carrier"),
    ("fulfillment", "change_nodecapacityday"),
    ("fulfillment", "add_routingconfig"),
    ("fulfillment", "change_routingconfig"),
    ("fulfillment", "add_channelnodepolicy"),
    ("fulfillment", "change_channelnodepolicy"),
    ("fulfillment", "delete_channelnodepolicy"),
    ("fulfillment", "add_nodeapitoken"),
    ("fulfillment", "change_nodeapitoken"),
    ("returns", "add_refund"),
    ("returns", "change_refund"),
    ("scorecards", "add_metricdefinition"),
    ("scorecards", "change_metricdefinition"),
    ("channels", "add_listing"),
    ("channels", "change_listing"),
    ("channels", "add_channellocation"),
    ("channels", "change_channellocation"),
    ("channels", "add_syncrun"),
}


def sync_roles(apps) -> None:
    """Create the groups and set their permissions (idempotent; works with historical apps)."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ours = Permission.objects.filter(content_type__app_label__in=WAYBILL_APPS).select_related("content_type")
    by_key = {(p.content_type.app_label, p.codename): p for p in ours}
    views = [p for (app, code), p in by_key.items() if code.startswith("view_")]
    grants = {
        VIEWER: views,
        OPS_AGENT: views + [by_key[k] for k in AGENT_EXTRA if k in by_key],
        OPS_MANAGER: views + [by_key[k] for k in MANAGER_EXTRA if k in by_key],
        ADMIN: list(Permission.objects.all()),
    }
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(grants[role])
