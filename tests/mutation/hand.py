"""Hand mutants of what mutmut does not mutate: the SQL held in module-level strings and the state machine's
tables. Each mutant is one edit of one module attribute; ``python -m tests.mutation.hand`` applies each in turn
to a fresh pytest run of its relevant tests and expects a failure (a mutant is killed when a test fails).

The edit is applied in the test process, after Django is set up and before any test runs (this module is also
a pytest plugin: ``-p tests.mutation.hand`` with WAYBILL_HAND_MUTANT naming the mutant), so no file of the
checkout is ever changed. A text edit must match exactly once, or the run stops with a usage error: a mutant
that no longer applies is reported, never counted as killed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

# Fastest first: pytest stops at the first failure (-x).
RESERVATION_TESTS = [
    "tests/inventory/test_reservation_paths.py",
    "tests/inventory/test_reservations.py",
    "tests/inventory/test_concurrency.py",
    "tests/inventory/test_reservation_fallback_concurrency.py",
]
PATH_TESTS = ["tests/orders/test_transition_table.py", "tests/orders/test_transition_path.py"]
TABLE_TESTS = ["tests/orders/test_transition_table.py", "tests/orders/test_state_machine.py"]
ROUTING_TESTS = [
    "tests/fulfillment/test_route_batch_guards.py",
    "tests/fulfillment/test_route_statements.py",
    "tests/fulfillment/test_route_and_reserve.py",
]

RES = "inventory.services.reservations"
STATE = "orders.services.state"
STATUS = "orders.status"
BATCH = "fulfillment.services.route.batch"


@dataclass(frozen=True)
class HandMutant:
    name: str
    module: str
    attribute: str
    why: str  # what the mutant breaks, in the domain's words
    tests: list[str]
    old: str = ""  # a text edit: replace ``old`` (found exactly once) by ``new``
    new: str = ""
    edit: Callable[[object], None] | None = field(default=None, compare=False)  # a table edit, in place


def _add(source: str, target: str):
    def edit(table) -> None:
        table[source] = frozenset(table[source] | {target})

    return edit


def _remove(source: str, target: str):
    def edit(table) -> None:
        assert target in table[source], f"{source} -> {target} is not in the table"
        table[source] = frozenset(table[source] - {target})

    return edit


def _swap(a: str, b: str):
    def edit(rank) -> None:
        rank[a], rank[b] = rank[b], rank[a]

    return edit


def _set(key: str, value: int):
    def edit(rank) -> None:
        rank[key] = value

    return edit


MUTANTS: list[HandMutant] = [
    # --- reservations: one line on one stock row -------------------------------------------------------
    HandMutant(
        "one-line: >= becomes >",
        RES,
        "_RESERVE_ONE_LINE_SQL",
        "the last free unit is never reserved",
        RESERVATION_TESTS,
        "AND on_hand - reserved - safety_stock >= %(total)s",
        "AND on_hand - reserved - safety_stock > %(total)s",
    ),
    HandMutant(
        "one-line: safety stock ignored",
        RES,
        "_RESERVE_ONE_LINE_SQL",
        "safety stock is sold",
        RESERVATION_TESTS,
        "AND on_hand - reserved - safety_stock >= %(total)s",
        "AND on_hand - reserved >= %(total)s",
    ),
    HandMutant(
        "one-line: reserved not incremented",
        RES,
        "_RESERVE_ONE_LINE_SQL",
        "a reservation that holds no stock: oversell",
        RESERVATION_TESTS,
        "SET reserved = reserved + %(total)s",
        "SET reserved = reserved",
    ),
    HandMutant(
        "one-line: line's SKU not checked",
        RES,
        "_RESERVE_ONE_LINE_SQL",
        "a line reserves another SKU's stock",
        RESERVATION_TESTS,
        "WHERE ol.id = %(line_id)s AND ol.sku_id = %(sku_id)s AND NOT o.marketplace_fulfilled",
        "WHERE ol.id = %(line_id)s AND NOT o.marketplace_fulfilled",
    ),
    HandMutant(
        "one-line: marketplace-fulfilled not checked",
        RES,
        "_RESERVE_ONE_LINE_SQL",
        "a marketplace-fulfilled order takes the seller's stock",
        RESERVATION_TESTS,
        "AND ol.sku_id = %(sku_id)s AND NOT o.marketplace_fulfilled)",
        "AND ol.sku_id = %(sku_id)s)",
    ),
    # --- reservations: several lines on one stock row --------------------------------------------------
    HandMutant(
        "one-row: >= becomes >",
        RES,
        "_RESERVE_ONE_ROW_SQL",
        "the last free unit is never reserved",
        RESERVATION_TESTS,
        "AND on_hand - reserved - safety_stock >= %(total)s",
        "AND on_hand - reserved - safety_stock > %(total)s",
    ),
    HandMutant(
        "one-row: safety stock ignored",
        RES,
        "_RESERVE_ONE_ROW_SQL",
        "safety stock is sold",
        RESERVATION_TESTS,
        "AND on_hand - reserved - safety_stock >= %(total)s",
        "AND on_hand - reserved >= %(total)s",
    ),
    HandMutant(
        "one-row: count = distinct_count check dropped",
        RES,
        "_RESERVE_ONE_ROW_SQL",
        "one good line lets a wrong or unknown line reserve with it",
        RESERVATION_TESTS,
        ") = %(distinct_count)s",
        ") >= 1",
    ),
    HandMutant(
        "one-row: line's SKU not checked",
        RES,
        "_RESERVE_ONE_ROW_SQL",
        "a line reserves another SKU's stock",
        RESERVATION_TESTS,
        "AND ol.sku_id = %(sku_id)s\n",
        "\n",
    ),
    HandMutant(
        "one-row: marketplace-fulfilled not checked",
        RES,
        "_RESERVE_ONE_ROW_SQL",
        "a marketplace-fulfilled order takes the seller's stock",
        RESERVATION_TESTS,
        "AND NOT o.marketplace_fulfilled) = %(distinct_count)s",
        ") = %(distinct_count)s",
    ),
    HandMutant(
        "one-row: lines merged into one reservation",
        RES,
        "_RESERVE_ONE_ROW_SQL",
        "two lines of one order on one row become one reservation of the first line",
        RESERVATION_TESTS,
        "SELECT v.order_line_id, s.sku_id, s.location_id, v.quantity, %(active)s, now(), now() FROM s CROSS JOIN v",
        "SELECT min(v.order_line_id), min(s.sku_id), min(s.location_id), sum(v.quantity)::integer, %(active)s,"
        " now(), now() FROM s CROSS JOIN v",
    ),
    # --- reservations: several stock rows --------------------------------------------------------------
    HandMutant(
        "rows: >= becomes >",
        RES,
        "_RESERVE_ROWS_SQL",
        "the last free unit of a row is never reserved",
        RESERVATION_TESTS,
        "s.on_hand - s.reserved - s.safety_stock >= need.total AS fits",
        "s.on_hand - s.reserved - s.safety_stock > need.total AS fits",
    ),
    HandMutant(
        "rows: safety stock ignored",
        RES,
        "_RESERVE_ROWS_SQL",
        "safety stock is sold",
        RESERVATION_TESTS,
        "s.on_hand - s.reserved - s.safety_stock >= need.total AS fits",
        "s.on_hand - s.reserved >= need.total AS fits",
    ),
    HandMutant(
        "rows: demand not summed per row",
        RES,
        "_RESERVE_ROWS_SQL",
        "two lines of one SKU both pass on the same units",
        RESERVATION_TESTS,
        "sum(quantity)::integer AS total",
        "max(quantity)::integer AS total",
    ),
    HandMutant(
        "rows: any fitting row is enough",
        RES,
        "_RESERVE_ROWS_SQL",
        "part of an order is reserved when another row is short",
        RESERVATION_TESTS,
        "(SELECT count(*) FROM locked WHERE fits) = (SELECT count(*) FROM need)",
        "(SELECT count(*) FROM locked WHERE fits) > 0",
    ),
    HandMutant(
        "rows: a missing stock row is not short",
        RES,
        "_RESERVE_ROWS_SQL",
        "a row without stock is skipped and the rest reserved",
        RESERVATION_TESTS,
        "(SELECT count(*) FROM locked WHERE fits) = (SELECT count(*) FROM need)",
        "(SELECT count(*) FROM locked WHERE fits) = (SELECT count(*) FROM locked)",
    ),
    HandMutant(
        "rows: line's SKU not checked",
        RES,
        "_RESERVE_ROWS_SQL",
        "a line reserves another SKU's stock",
        RESERVATION_TESTS,
        "JOIN {line} ol ON ol.id = dl.order_line_id AND ol.sku_id = dl.sku_id",
        "JOIN {line} ol ON ol.id = dl.order_line_id",
    ),
    HandMutant(
        "rows: marketplace-fulfilled not checked",
        RES,
        "_RESERVE_ROWS_SQL",
        "a marketplace-fulfilled order takes the seller's stock",
        RESERVATION_TESTS,
        "JOIN {order} o ON o.id = ol.order_id AND NOT o.marketplace_fulfilled",
        "JOIN {order} o ON o.id = ol.order_id",
    ),
    HandMutant(
        "rows: line check dropped",
        RES,
        "_RESERVE_ROWS_SQL",
        "unknown, wrong-SKU and marketplace lines reserve",
        RESERVATION_TESTS,
        "AS ok\n",
        "OR true AS ok\n",
    ),
    HandMutant(
        "rows: rows not locked",
        RES,
        "_RESERVE_ROWS_SQL",
        "the check reads a stale row while a concurrent order takes its units: oversell",
        RESERVATION_TESTS,
        "     ORDER BY s.id\n       FOR UPDATE OF s\n",
        "\n",
    ),
    # --- the transition path statement -----------------------------------------------------------------
    HandMutant(
        "path: from-status guard dropped",
        STATE,
        "_TRANSITION_PATH_SQL",
        "an order no longer in the path's first status is moved anyway",
        PATH_TESTS,
        " AND status = %(from_status)s",
        "",
    ),
    HandMutant(
        "path: step reasons lost",
        STATE,
        "_TRANSITION_PATH_SQL",
        "the events lose their reasons",
        PATH_TESTS,
        "%(actor)s, e.reason, %(data)s",
        "%(actor)s, '', %(data)s",
    ),
    HandMutant(
        "path: events in reverse step order",
        STATE,
        "_TRANSITION_PATH_SQL",
        "the audit trail reads backwards and the returned events name the wrong steps",
        PATH_TESTS,
        "ORDER BY o.id, e.n",
        "ORDER BY o.id, e.n DESC",
    ),
    HandMutant(
        "path: event data dropped",
        STATE,
        "_TRANSITION_PATH_SQL",
        "the events lose their data",
        PATH_TESTS,
        "e.reason, %(data)s, now()",
        "e.reason, '{}'::jsonb, now()",
    ),
    HandMutant(
        "path: user not recorded",
        STATE,
        "_TRANSITION_PATH_SQL",
        "the events lose the user who acted",
        PATH_TESTS,
        "'status_changed', e.from_status, e.to_status, %(user_id)s",
        "'status_changed', e.from_status, e.to_status, NULL",
    ),
    # --- the transition table and the status rank ------------------------------------------------------
    HandMutant(
        "table: + shipped -> open",
        STATUS,
        "TRANSITIONS",
        "a shipped order reopens",
        TABLE_TESTS,
        edit=_add("shipped", "open"),
    ),
    HandMutant(
        "table: + delivered -> shipped",
        STATUS,
        "TRANSITIONS",
        "delivery is undone",
        TABLE_TESTS,
        edit=_add("delivered", "shipped"),
    ),
    HandMutant(
        "table: + cancelled -> open",
        STATUS,
        "TRANSITIONS",
        "a cancelled order comes back",
        TABLE_TESTS,
        edit=_add("cancelled", "open"),
    ),
    HandMutant(
        "table: - shipped -> delivered",
        STATUS,
        "TRANSITIONS",
        "a delivery is refused",
        TABLE_TESTS,
        edit=_remove("shipped", "delivered"),
    ),
    HandMutant(
        "table: - released -> shipped",
        STATUS,
        "TRANSITIONS",
        "a released order cannot ship",
        TABLE_TESTS,
        edit=_remove("released", "shipped"),
    ),
    HandMutant(
        "table: - open -> allocated",
        STATUS,
        "TRANSITIONS",
        "routing cannot allocate",
        TABLE_TESTS,
        edit=_remove("open", "allocated"),
    ),
    HandMutant(
        "table: - pending -> cancelled",
        STATUS,
        "TRANSITIONS",
        "a pending order cannot be cancelled",
        TABLE_TESTS,
        edit=_remove("pending", "cancelled"),
    ),
    HandMutant(
        "rank: open <-> backordered",
        STATUS,
        "RANK",
        "a payload moves a backordered order back to open",
        TABLE_TESTS,
        edit=_swap("open", "backordered"),
    ),
    HandMutant(
        "rank: allocated <-> released",
        STATUS,
        "RANK",
        "a payload un-releases an order",
        TABLE_TESTS,
        edit=_swap("allocated", "released"),
    ),
    HandMutant(
        "rank: pending <-> open",
        STATUS,
        "RANK",
        "a payload moves an open order back to pending",
        TABLE_TESTS,
        edit=_swap("pending", "open"),
    ),
    HandMutant(
        "rank: delivered <-> returned",
        STATUS,
        "RANK",
        "a return is never applied from delivered",
        TABLE_TESTS,
        edit=_swap("delivered", "returned"),
    ),
    HandMutant(
        "rank: cancelled lowest",
        STATUS,
        "RANK",
        "a channel's cancellation never lands",
        TABLE_TESTS,
        edit=_set("cancelled", -1),
    ),
    HandMutant(
        "rank: shipped below released",
        STATUS,
        "RANK",
        "a channel's shipment never lands",
        TABLE_TESTS,
        edit=_set("shipped", 3),
    ),
    # --- order routing's batch statement ---------------------------------------------------------------
    HandMutant(
        "batch: lines cancelled since the read allocated",
        BATCH,
        "_FAST_WRITE_SQL",
        "a line cancelled after the batch read its order is reserved, shipped and set allocated",
        ROUTING_TESTS,
        " AND ol.status <> %(cancelled)s\n       AND ol.quantity - ol.quantity_cancelled - ol.quantity_shipped\n"
        "           >= (SELECT sum(lv.quantity) FROM lv WHERE lv.order_line_id = ol.id)",
        "",
    ),
    HandMutant(
        "batch: part-cancelled lines allocated",
        BATCH,
        "_FAST_WRITE_SQL",
        "units cancelled after the batch read their order are reserved and shipped",
        ROUTING_TESTS,
        "\n       AND ol.quantity - ol.quantity_cancelled - ol.quantity_shipped\n"
        "           >= (SELECT sum(lv.quantity) FROM lv WHERE lv.order_line_id = ol.id)",
        "",
    ),
    HandMutant(
        "batch: shipment lines to any shipment of the order",
        BATCH,
        "_FAST_WRITE_SQL",
        "a split order's lines land in the wrong node's shipment",
        ROUTING_TESTS,
        "ON ship.order_id = lv.order_id AND ship.location_id = lv.location_id",
        "ON ship.order_id = lv.order_id",
    ),
    HandMutant(
        "batch: routed event without its decision",
        BATCH,
        "_FAST_WRITE_SQL",
        "the routed event no longer names its routing decision",
        ROUTING_TESTS,
        "jsonb_build_object('decision_id', dec.id) || dv.event_data",
        "dv.event_data",
    ),
    HandMutant(
        "batch: backordered lines set allocated",
        BATCH,
        "_FAST_WRITE_SQL",
        "a line left waiting for stock looks allocated, and no receipt ever fills it",
        ROUTING_TESTS,
        "UPDATE {order_line} ol SET status = %(backordered)s",
        "UPDATE {order_line} ol SET status = %(allocated)s",
    ),
    HandMutant(
        "batch: an order left open is not re-checked",
        BATCH,
        "_FAST_WRITE_SQL",
        "a batch writes a decision and opens cases for an order put on hold since it was read",
        ROUTING_TESTS,
        "AND o.status = %(open)s AND NOT o.on_hold",
        "",
    ),
]

BY_NAME = {m.name: m for m in MUTANTS}
ENV = "WAYBILL_HAND_MUTANT"


def apply(mutant: HandMutant) -> None:
    module = importlib.import_module(mutant.module)
    value = getattr(module, mutant.attribute)
    if mutant.edit is not None:
        mutant.edit(value)  # in place: every module that imported the table sees the edit
    else:
        found = value.count(mutant.old)
        if found != 1:
            raise pytest.UsageError(f"hand mutant {mutant.name!r}: its text is found {found} times, not once")
        setattr(module, mutant.attribute, value.replace(mutant.old, mutant.new))
    for cached in ("_sql", "_fast_write_sql"):
        if hasattr(getattr(module, cached, None), "cache_clear"):
            getattr(module, cached).cache_clear()


@pytest.hookimpl(trylast=True)
def pytest_configure(config) -> None:
    name = os.environ.get(ENV)
    if name:
        apply(BY_NAME[name])


def _run(mutant: HandMutant, budget: float) -> tuple[str, float]:
    env = {**os.environ, ENV: mutant.name}
    command = [sys.executable, "-m", "pytest", "-p", "tests.mutation.hand", "-p", "no:randomly", "-x", "-q"]
    started = time.monotonic()
    try:
        done = subprocess.run(
            [*command, *mutant.tests], env=env, capture_output=True, text=True, timeout=budget, check=False
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started
    outcome = {0: "SURVIVED", 1: "killed"}.get(done.returncode, f"error (pytest exit {done.returncode})")
    if outcome.startswith("error"):
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
    return outcome, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=600.0, help="wall-clock seconds per mutant")
    parser.add_argument("names", nargs="*", help="only these mutants (default: all)")
    args = parser.parse_args(argv)
    chosen = [BY_NAME[n] for n in args.names] if args.names else MUTANTS
    failed = 0
    started = time.monotonic()
    for mutant in chosen:
        outcome, seconds = _run(mutant, args.budget)
        # a timeout means the tests hung on the mutant: detected, as mutmut counts it
        failed += outcome not in ("killed", "timeout")
        print(f"{outcome:>8}  {seconds:5.1f}s  {mutant.module}.{mutant.attribute}: {mutant.name} ({mutant.why})")
    killed = len(chosen) - failed
    print(f"hand mutants: {killed}/{len(chosen)} killed in {time.monotonic() - started:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
