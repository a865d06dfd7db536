"""Helpers the channel tests share."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from channels.services import connector_for


def listed_order(account, order_id: str, *, id_field: str) -> dict:
    """The raw order ``order_id`` as one element of a page the account's connector fetches (the last day's
    orders); ``id_field`` is the channel's order id field."""
    for page in connector_for(account).fetch_orders(since=timezone.now() - timedelta(days=1)):
        for raw in page.raw_orders:
            if raw[id_field] == order_id:
                return raw
    raise AssertionError(f"{order_id} not listed")
