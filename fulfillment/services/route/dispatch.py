"""The entry points: a batch of orders goes the normal path together (fulfillment.services.route.batch),
each order left over, or every order after a race, goes alone: the normal path when it has that shape,
the general path (fulfillment.services.route.general) otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import transaction

from config.kernel.actors import Actor, actor_resolve
from fulfillment.selectors import NetworkSnapshot, network_snapshot, orders_to_route
from fulfillment.services.route.batch import FastPathMiss, route_batch, route_fast
from fulfillment.services.route.common import RouteResult
from fulfillment.services.route.general import order_route_in_transaction


def orders_route(
    *,
    order_ids: Sequence[int],
    actor: Actor,
    now: datetime | None = None,
    network: NetworkSnapshot | None = None,
) -> list[RouteResult]:
    """Route and reserve a batch of orders. The network (nodes, eligibility, capacity, ATP, rules) is loaded
    once for the batch in a constant number of queries. The open, unheld orders are decided together in one
    transaction, all or nothing: five statements when they route whole, at most seven when some backorder or
    open exception cases; the others, or all of them after a race rolled that transaction back, one
    transaction each."""
    actor_resolve(actor)
    ids = list(dict.fromkeys(int(i) for i in order_ids))
    if not ids:
        return []
    preview = None
    if network is None:
        preview = orders_to_route(ids)
        sku_ids = sorted({line.sku_id for o in preview.values() for line in o.route.lines})
        network = network_snapshot(sku_ids=sku_ids, now=now)
    done: dict[int, RouteResult] = {}
    if len(ids) > 1:
        # The normal shape, all together: one transaction, five statements for the whole batch (four when
        # the orders were just read for the snapshot: that read serves as the re-read).
        try:
            with transaction.atomic(durable=True):
                done = route_batch(order_ids=ids, network=network, actor=actor, now=now, fresh=preview)
        except FastPathMiss:
            # Rolled back: a race. Every order goes one by one, each in its own transaction.
            done = {}
    results = []
    for order_id in ids:
        if order_id in done:
            results.append(done[order_id])
            continue
        try:
            with transaction.atomic(durable=True):
                result = route_fast(order_id=order_id, network=network, actor=actor, now=now)
                if result is None:  # not the normal shape: nothing written yet, take the general path
                    result = order_route_in_transaction(order_id=order_id, network=network, actor=actor, now=now)
        except FastPathMiss:
            # Rolled back: a race (stock, capacity, another router, a status change). The general path
            # takes the advisory lock, re-reads and decides.
            with transaction.atomic(durable=True):
                result = order_route_in_transaction(order_id=order_id, network=network, actor=actor, now=now)
        results.append(result)
    return results


def order_route(*, order_id: int, actor: Actor, now: datetime | None = None) -> RouteResult:
    """Route and reserve one order (see orders_route)."""
    return orders_route(order_ids=[order_id], actor=actor, now=now)[0]
