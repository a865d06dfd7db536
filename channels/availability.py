"""What each channel account should advertise, and the diff against what was last pushed.

quantity = Σ ATP over the account's eligible locations - the account's buffer, never below zero:
  fixed    buffer_value units
  percent  buffer_value % of the ATP, rounded up (hold back whole units)
  dynamic  recent sales velocity of the SKU on the account x the account's measured sync lag,
           rounded up; buffer_value, when set, is a floor in units
Rows are kept for the accounts that list the SKU (an active Listing). ``needs_push`` is the record
of what the channel connector should push: quantity differs from last_pushed_quantity.

Inventory announces every stock change after commit (inventory.signals.stock_changed); channels/receivers
has channels.tasks schedule a recompute (debounced here), and the outbox's planner turns flagged rows into
inventory pushes. This module is the only writer of ChannelAvailability.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Case, Sum, Value, When
from django.utils import timezone

from channels.models import ChannelAccount, ChannelAvailability, Listing
from inventory.selectors import atp_by_sku_location
from orders.models import OrderLine

VELOCITY_WINDOW = timedelta(hours=24)


def advertised_quantity(
    *, atp: int, policy: str, value: Decimal | int | float, velocity_per_second: float = 0.0, lag_seconds: float = 0.0
) -> int:
    """The quantity to advertise for one account and SKU (pure: no database)."""
    value = Decimal(str(value or 0))
    if policy == "fixed":
        buffer = math.ceil(value)
    elif policy == "percent":
        buffer = math.ceil(Decimal(atp) * value / 100)
    elif policy == "dynamic":
        buffer = max(math.ceil(velocity_per_second * max(lag_seconds, 0.0)), math.ceil(value))
    else:
        buffer = 0
    return max(atp - buffer, 0)


def _debounce_key(sku_id: int) -> str:
    # The database name keeps test runs against different databases apart in a shared cache.
    return f"channels:availability:{connection.settings_dict['NAME']}:{sku_id}"


def debounce_seconds() -> float:
    """The coalescing window: INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS, else 0 when Celery runs
    eagerly (tests: every change recomputes at once) and 2 s otherwise."""
    value = getattr(settings, "INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS", None)
    if value is None:
        value = 0.0 if settings.CELERY_TASK_ALWAYS_EAGER else 2.0
    return float(value)


# sku_id -> wall-clock time until which a queued recompute is known to cover this process's changes.
_covered_until: dict[int, float] = {}


def channel_availability_recompute_due(*, sku_ids: Iterable[int]) -> tuple[list[int], float]:
    """Which of these changed SKUs need a recompute queued, and its countdown: at most one per SKU per
    window. channels.tasks.channel_availability_schedule queues it (countdown 0: at once, every SKU).

    The first change in a window sets a shared cache key holding the window's end and is due with the
    window as countdown; the task runs no earlier than that end and reads the stock then, so it covers
    every change made before it. Other changes in the window (any process) find the key and are not due;
    each process also remembers the end locally, so a hot SKU costs a dict lookup per change, not a task
    or a cache round trip.
    """
    ids = sorted(set(sku_ids))
    window = debounce_seconds()
    if window <= 0:
        return ids, 0.0
    now = time.time()
    fresh = []
    for sku_id in ids:
        if _covered_until.get(sku_id, 0.0) > now:
            continue
        key, until = _debounce_key(sku_id), now + window
        if cache.add(key, until, timeout=window):
            fresh.append(sku_id)
            _covered_until[sku_id] = until
        else:
            # Someone else's task runs no earlier than their window's end: covered until then.
            _covered_until[sku_id] = min(float(cache.get(key) or 0.0), until)
    return fresh, window


def channel_availability_recompute(*, sku_ids: Iterable[int]) -> list[ChannelAvailability]:
    """Recompute ChannelAvailability for these SKUs on every account that lists them.

    The rows are locked (pk order) before the stock is read, so of two concurrent recomputes the
    later one reads the newer stock and writes last: no stale quantity survives.
    """
    sku_ids = sorted(set(sku_ids))
    if not sku_ids:
        return []
    listed = set(
        Listing.objects.filter(sku_id__in=sku_ids, is_active=True, account__is_enabled=True).values_list(
            "account_id", "sku_id"
        )
    )
    known = set(ChannelAvailability.objects.filter(sku_id__in=sku_ids).values_list("account_id", "sku_id"))
    pairs = listed | known
    if not pairs:
        return []
    account_ids = sorted({a for a, _ in pairs})
    now = timezone.now()
    with transaction.atomic():
        ChannelAvailability.objects.bulk_create(
            [ChannelAvailability(account_id=a, sku_id=s, quantity=0) for a, s in sorted(listed - known)],
            ignore_conflicts=True,
        )
        rows = list(
            ChannelAvailability.objects.select_for_update()
            .filter(sku_id__in=sku_ids, account_id__in=account_ids)
            .order_by("pk")
        )
        atp = _atp_by_account(account_ids, sku_ids)
        accounts = {
            a["id"]: a
            for a in ChannelAccount.objects.filter(pk__in=account_ids).values(
                "id", "buffer_policy", "buffer_value", "sync_lag_seconds", "sync_interval_seconds"
            )
        }
        dynamic = [a for a, acc in accounts.items() if acc["buffer_policy"] == "dynamic"]
        velocity = _velocity(dynamic, sku_ids, now) if dynamic else {}
        changed = []
        for row in rows:
            account = accounts[row.account_id]
            if (row.account_id, row.sku_id) in listed:
                lag = account["sync_lag_seconds"]
                if lag is None:
                    lag = float(account["sync_interval_seconds"])
                quantity = advertised_quantity(
                    atp=atp.get((row.account_id, row.sku_id), 0),
                    policy=account["buffer_policy"],
                    value=account["buffer_value"],
                    velocity_per_second=velocity.get((row.account_id, row.sku_id), 0.0),
                    lag_seconds=lag,
                )
            else:
                quantity = 0  # no longer listed (or the account is disabled): advertise nothing
            needs_push = quantity != row.last_pushed_quantity
            if quantity != row.quantity or needs_push != row.needs_push:
                row.quantity, row.needs_push, row.computed_at = quantity, needs_push, now
                changed.append(row)
        ChannelAvailability.objects.bulk_update(changed, ["quantity", "needs_push", "computed_at"])
    return rows


def _atp_by_account(account_ids: list[int], sku_ids: list[int]) -> dict[tuple[int, int], int]:
    """{(account_id, sku_id): Σ ATP over the account's eligible (active) locations}."""
    accounts_of: dict[int, list[int]] = defaultdict(list)
    for account_id, location_id in ChannelAccount.eligible_locations.through.objects.filter(
        channelaccount_id__in=account_ids
    ).values_list("channelaccount_id", "location_id"):
        accounts_of[location_id].append(account_id)
    totals: dict[tuple[int, int], int] = defaultdict(int)
    for (sku_id, location_id), atp in atp_by_sku_location(sku_ids=sku_ids, location_ids=accounts_of).items():
        for account_id in accounts_of[location_id]:
            totals[(account_id, sku_id)] += atp
    return dict(totals)


def _velocity(account_ids: list[int], sku_ids: list[int], now: datetime) -> dict[tuple[int, int], float]:
    """Units per second ordered on each account over the last VELOCITY_WINDOW."""
    since = now - VELOCITY_WINDOW
    rows = (
        OrderLine.objects.filter(sku_id__in=sku_ids, order__account_id__in=account_ids, order__placed_at__gte=since)
        .exclude(order__status="cancelled")
        .values("order__account_id", "sku_id")
        .annotate(units=Sum("quantity"))
    )
    seconds = VELOCITY_WINDOW.total_seconds()
    return {(r["order__account_id"], r["sku_id"]): (r["units"] or 0) / seconds for r in rows}


def channel_availability_mark_pushed(*, availability_id: int, quantity: int) -> ChannelAvailability:
    """The connector pushed ``quantity``: record it; needs_push stays set if the quantity moved since."""
    with transaction.atomic():
        row = ChannelAvailability.objects.select_for_update().get(pk=availability_id)
        row.last_pushed_quantity = quantity
        row.last_pushed_at = timezone.now()
        row.needs_push = row.quantity != quantity
        row.save(update_fields=["last_pushed_quantity", "last_pushed_at", "needs_push"])
    return row


def channel_availabilities_mark_pushed(*, pushed: Mapping[int, int]) -> None:
    """The connector pushed these quantities ({availability id: quantity}): record them; needs_push stays
    set where the quantity moved since it was read for the push."""
    if not pushed:
        return
    now = timezone.now()
    with transaction.atomic():
        for availability_id, quantity in sorted(pushed.items()):
            ChannelAvailability.objects.filter(pk=availability_id).update(
                last_pushed_quantity=quantity,
                last_pushed_at=now,
                needs_push=Case(When(quantity=quantity, then=Value(False)), default=Value(True)),
            )


def channel_availability_claim_due(
    *, kinds: Iterable[str], limit: int = 20000
) -> list[tuple[int, int, int, int, int | None]]:
    """Take the rows flagged ``needs_push`` on enabled accounts of these kinds (skipping rows another planner
    holds) and clear their flag: [(id, account_id, sku_id, quantity, last_pushed_quantity)] in pk order.

    Runs in the caller's transaction (the planner queues its messages in it): the rows stay locked, and
    the flags come back if it rolls back."""
    with transaction.atomic():
        rows = list(
            ChannelAvailability.objects.select_for_update(skip_locked=True)
            .filter(needs_push=True, account__is_enabled=True, account__kind__in=list(kinds))
            .order_by("pk")
            .values_list("pk", "account_id", "sku_id", "quantity", "last_pushed_quantity")[:limit]
        )
        if rows:
            ChannelAvailability.objects.filter(pk__in=[r[0] for r in rows]).update(needs_push=False)
    return rows


def channel_availability_reconcile(*, batch: int = 500) -> int:
    """Recompute every listed SKU: the periodic full reconciliation behind the event-driven updates."""
    sku_ids = sorted(set(Listing.objects.filter(sku__isnull=False).values_list("sku_id", flat=True)))
    for start in range(0, len(sku_ids), batch):
        channel_availability_recompute(sku_ids=sku_ids[start : start + batch])
    return len(sku_ids)


# --- reconciliation (channels/reconcile.py) ---------------------------------------------------------


def channel_availabilities_observed(*, observed: Mapping[int, int]) -> None:
    """Reconciliation read what the channel advertises now ({availability id: quantity}): that is what the
    channel holds, so it becomes the last pushed quantity and the next push diffs against it. The caller
    queues the push; the flag is cleared here so the planner does not queue a second one."""
    if not observed:
        return
    with transaction.atomic():
        for availability_id, quantity in sorted(observed.items()):
            ChannelAvailability.objects.filter(pk=availability_id).update(
                last_pushed_quantity=quantity, needs_push=False
            )


# --- end of reconciliation ---------------------------------------------------------------------------
