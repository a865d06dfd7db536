from __future__ import annotations

from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

from orders.tasks import HEARTBEAT_KEY

NAVIGATION = [
    ("orders", "Orders", "orders:list"),
    ("exceptions", "Exceptions", "orders:exceptions"),
    ("inventory", "Inventory", "inventory:grid"),
    ("fulfillment", "Fulfilment", "fulfillment:board"),
    ("returns", "Returns", "returns:queue"),
    ("channels", "Channels", "channels:accounts"),
    ("scorecards", "Scorecards", "console-section-scorecards"),
]


def console(request) -> dict:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {"navigation": NAVIGATION}
    beat = cache.get(HEARTBEAT_KEY)
    age = None
    if beat:
        age = (timezone.now() - datetime.fromisoformat(beat)).total_seconds()
    return {"navigation": NAVIGATION, "worker_heartbeat_age": age}
