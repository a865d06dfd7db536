"""Order priorities an outer app supplies to another without either importing the other.

Scorecards knows what an order's lateness costs in metric points; the fulfilment board sorts by it but
may not import scorecards. The supplier registers a function at app start (AppConfig.ready); a reader asks
``order_priorities`` and gets the sum of every supplier's points per order (0 for unknown orders).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

PriorityProvider = Callable[[list[int]], Mapping[int, float]]
_providers: dict[str, PriorityProvider] = {}


def order_priority_register(name: str, provider: PriorityProvider) -> None:
    """Register (or replace) the provider called ``name``."""
    _providers[name] = provider


def order_priorities(order_ids: Iterable[int]) -> dict[int, float]:
    ids = list(order_ids)
    out = dict.fromkeys(ids, 0.0)
    for provider in _providers.values():
        for order_id, points in provider(ids).items():
            if order_id in out:
                out[order_id] += float(points)
    return out
