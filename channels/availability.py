"""What each channel account should advertise, and the diff against what was last pushed.

quantity = Σ ATP over the account's eligible locations - the account's buffer, never below zero:
  fixed    buffer_value units
  percent  buffer_value % of the ATP, rounded up (hold back whole units)
  dynamic  recent sales velocity of the SKU on the account x the account's measured sync lag,
           rounded up; buffer_value, when set, is a floor in units
Rows are kept for the accounts that list the SKU (an active Listing). ``needs_push`` is the record
of what the channel connector should push: quantity differs from last_pushed_quantity.

Inventory announces every stock change after commit (inventory.signals.stock_changed); channels/receivers
has channels.tasks schedule a recompute (at once, then at most once per SKU per short window: debounced here),
and the same task has the outbox push what moved to each account as soon as the account's rate budget allows
(channels.outbox.inventory_push_now). This module is the only writer of ChannelAvailability.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
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


def _started_key(sku_id: int) -> str:
    return f"channels:availability-started:{connection.settings_dict['NAME']}:{sku_id}"


def debounce_seconds() -> float:
    """The shortest time between two recomputes of one SKU: INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS, else 0
    when Celery runs eagerly (tests: every change recomputes at once) and 0.02 s otherwise. The first change
    after a quiet spell is recomputed at once; a burst is recomputed at most once per window, always again
    after its last change. The window bounds the recomputes a flash sale costs (50 a second at most); the
    account's push slots bound the calls to the channel. tests/benchmarks/RESULTS.md: 0.1 s added about 40 ms
    to the median push latency at 33 changes a second."""
    value = getattr(settings, "INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS", None)
    if value is None:
        value = 0.0 if settings.CELERY_TASK_ALWAYS_EAGER else 0.02
    return float(value)


# sku_id -> wall-clock time before which a queued recompute is known to start no earlier (so it covers
# this process's changes until then); 0 -> the same for the queued drain, which covers the SKUs this process
# added to the pending set for it (_covered_skus).
_covered_until: dict[int, float] = {}
_covered_skus: set[int] = set()


def channel_availability_recompute_due(*, sku_ids: Iterable[int]) -> list[tuple[float, list[int]]]:
    """Which of these changed SKUs need a recompute queued, grouped by countdown: [(countdown, sku_ids)].
    channels.tasks.channel_availability_schedule queues them.

    A SKU's marker (a cache key) says a recompute of it is queued and not started; the task clears it when
    it starts (channel_availability_recompute_started) and only then reads the stock, so a change committed
    while the marker is set is covered. The change that sets the marker queues the task: at once (leading
    edge), or at the SKU's last start plus the window when that is later; the marker holds that time, and a
    process that learns it covers its own changes until then with a dict lookup, not a cache round trip.
    """
    ids = sorted(set(sku_ids))
    window = debounce_seconds()
    if window <= 0:
        return [(0.0, ids)] if ids else []
    now = time.time()
    groups: dict[float, list[int]] = defaultdict(list)
    ttl = max(window * 10, 60.0)
    for sku_id in ids:
        if _covered_until.get(sku_id, 0.0) > now:
            continue
        key = _debounce_key(sku_id)
        if cache.add(key, now, timeout=ttl):
            started = float(cache.get(_started_key(sku_id)) or 0.0)
            due = max(now, started + window)
            if due > now:
                cache.set(key, due, timeout=ttl)
            _covered_until[sku_id] = due
            groups[round(due - now, 3)].append(sku_id)
        else:
            # A recompute is queued and has not started: it reads the stock after this commit.
            _covered_until[sku_id] = float(cache.get(key) or 0.0)
    return sorted(groups.items())


# --- with Redis: one set of changed SKUs, drained by one task at a time ------------------------------------


def _redis():
    """The cache's Redis client when the cache is Redis (production), else None (the file cache)."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    return backend._cache.get_client(write=True)


def channel_availability_batched() -> bool:
    """Changed SKUs are batched in one pending set drained by one task at a time: with Redis and a window."""
    return debounce_seconds() > 0 and _redis() is not None


def _pending_keys() -> tuple[str, str, str, str]:
    name = connection.settings_dict["NAME"]
    return (
        f"waybill:availability-pending:{name}",  # changed SKU ids, scored by the change's sequence number
        f"waybill:availability-seq:{name}",  # the sequence
        f"waybill:availability-drain:{name}",  # a drain is queued and not started: its due time
        f"waybill:availability-drained:{name}",  # when the last drain started
    )


# KEYS: pending, seq, marker, drained; ARGV: sku ids..., now, marker ttl (ms).
_CHANGED_LUA = """
local seq = redis.call('INCR', KEYS[2])
for i = 1, #ARGV - 2 do redis.call('ZADD', KEYS[1], seq, ARGV[i]) end
local queued = redis.call('SET', KEYS[3], ARGV[#ARGV - 1], 'NX', 'PX', ARGV[#ARGV])
return {queued and 1 or 0, redis.call('GET', KEYS[3]) or false, redis.call('GET', KEYS[4]) or false}
"""


def channel_availability_changed(*, sku_ids: Iterable[int]) -> float | None:
    """Add changed SKUs to the pending set (Redis); the countdown of a drain to queue, or None when one is
    already queued (it starts after this commit, so it reads these changes). Not used without Redis: the
    caller queues a recompute per SKU instead (channel_availability_recompute_due).

    One round trip per change (a script: the SKUs scored with the next sequence number, the queued marker set
    if absent). The first change after a drain started queues the next one, at once, or at the last start
    plus the window in a burst. A process that learns a queued drain's due time covers its own further
    changes of the SKUs it added for that drain until then with a set lookup (a hot SKU: no round trip)."""
    ids = sorted(set(sku_ids))
    now = time.time()
    if not ids or (_covered_until.get(0, 0.0) > now and _covered_skus.issuperset(ids)):
        return None  # this process added these SKUs for a drain that starts no earlier than then
    window = debounce_seconds()
    keys = _pending_keys()
    ttl_ms = int(max(window * 10, 60.0) * 1000)
    queued_now, due, started = _redis().eval(_CHANGED_LUA, len(keys), *keys, *ids, repr(now), ttl_ms)
    if queued_now:
        due = max(now, float(started or 0.0) + window)
        if due > now:
            _redis().set(keys[2], repr(due), xx=True, px=ttl_ms)
    else:
        due = float(due or 0.0)
    if due != _covered_until.get(0):
        _covered_skus.clear()
    _covered_until[0] = due
    _covered_skus.update(ids)
    return due - now if queued_now else None


def channel_availability_drain_started() -> tuple[list[int], int]:
    """A drain starts: record when, clear the queued marker, and read every pending SKU up to the current
    sequence number, atomically: ([sku ids], that number). A change from now on queues the next drain.
    channel_availability_drained removes what was read once the recompute has committed, so a drain that dies
    leaves its SKUs for the next one (the beat sweep queues one when the set is not empty)."""
    pending, seq, marker, drained = _pending_keys()
    with _redis().pipeline(transaction=True) as pipe:
        pipe.set(drained, repr(time.time()), px=int(max(debounce_seconds() * 10, 60.0) * 1000))
        pipe.delete(marker)
        pipe.get(seq)
        pipe.zrangebyscore(pending, "-inf", "+inf", withscores=True)
        _, _, cutoff, members = pipe.execute()
    cutoff = int(cutoff or 0)
    return sorted(int(member) for member, score in members if score <= cutoff), cutoff


def channel_availability_drained(*, cutoff: int) -> None:
    """The drain's recompute committed: forget the SKUs it read (changed again since: a higher score, kept)."""
    _redis().zremrangebyscore(_pending_keys()[0], "-inf", cutoff)


def channel_availability_pending() -> int:
    """How many changed SKUs wait for a drain (0 without Redis)."""
    client = _redis()
    return int(client.zcard(_pending_keys()[0])) if client is not None else 0


def channel_availability_recompute_started(*, sku_ids: Iterable[int]) -> None:
    """A queued recompute of these SKUs starts: record when (the next one waits the window from here) and
    clear their markers, before the stock is read, so that a change committed from now on queues another."""
    ids = sorted(set(sku_ids))
    window = debounce_seconds()
    if window <= 0 or not ids:
        return
    now = time.time()
    timeout = max(round(window * 10), 60)
    cache.set_many({_started_key(sku_id): now for sku_id in ids}, timeout=timeout)
    cache.delete_many([_debounce_key(sku_id) for sku_id in ids])


def channel_availability_recompute(
    *, sku_ids: Iterable[int], account_ids: Iterable[int] | None = None
) -> list[ChannelAvailability]:
    """Recompute ChannelAvailability for these SKUs on every account that lists them (or on these accounts).

    The rows are locked (pk order) before the stock is read, so of two concurrent recomputes the
    later one reads the newer stock and writes last: no stale quantity survives.
    """
    sku_ids = sorted(set(sku_ids))
    if not sku_ids:
        return []
    listings = Listing.objects.filter(sku_id__in=sku_ids, is_active=True, account__is_enabled=True)
    known_rows = ChannelAvailability.objects.filter(sku_id__in=sku_ids)
    if account_ids is not None:
        listings = listings.filter(account_id__in=list(account_ids))
        known_rows = known_rows.filter(account_id__in=list(account_ids))
    listed = set(listings.values_list("account_id", "sku_id"))
    known = set(known_rows.values_list("account_id", "sku_id"))
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


def channel_availability_flagged(*, account_id: int | None = None) -> dict[int, list[int]]:
    """{account id: [sku ids]} of the rows flagged ``needs_push`` on enabled accounts (or on one account)."""
    rows = ChannelAvailability.objects.filter(needs_push=True, account__is_enabled=True)
    if account_id is not None:
        rows = rows.filter(account_id=account_id)
    flagged: dict[int, list[int]] = defaultdict(list)
    for account, sku_id in rows.order_by("account_id", "sku_id").values_list("account_id", "sku_id"):
        flagged[account].append(sku_id)
    return dict(flagged)


def channel_availability_claim_due(
    *, kinds: Iterable[str], limit: int = 20000, account_id: int | None = None
) -> list[tuple[int, int, int, int, int | None]]:
    """Take the rows flagged ``needs_push`` on enabled accounts of these kinds (skipping rows another planner
    holds) and clear their flag: [(id, account_id, sku_id, quantity, last_pushed_quantity)] in pk order.

    Runs in the caller's transaction (the planner queues its messages in it): the rows stay locked, and
    the flags come back if it rolls back."""
    with transaction.atomic():
        rows = list(
            ChannelAvailability.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(needs_push=True, account__is_enabled=True, account__kind__in=list(kinds))
            .filter(**({} if account_id is None else {"account_id": account_id}))
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
