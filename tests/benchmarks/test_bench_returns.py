"""Receiving returns: receipts per second through ``returns.services.rma_receive`` (one process), the
statements one receipt costs, and a replayed receipt's cost, next to a raw limit measured in the same run.

The raw limit: the stock ledger's own write for the same units (``inventory.services.stock_returns_apply``,
one call per receipt), which every receipt makes; the ratio says what the RMA bookkeeping around it costs
(the RMA row lock, the receipt and unit rows, the order's returned quantities and status, the audit rows).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory import services as inventory_services
from orders.models import LineStatus, OrderStatus
from returns import services
from returns.services import ReceiveItem, ReturnLineInput
from tests.benchmarks.results import write_section
from tests.factories import LocationFactory, OrderFactory, OrderLineFactory, SkuFactory

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]

RMAS = 150
ROUNDS = 3
SECTION = "returns-receiving"


def _rmas(count: int, node) -> list[tuple[int, str]]:
    made = []
    for _ in range(count):
        order = OrderFactory(status=OrderStatus.SHIPPED, total_amount=Decimal("100"))
        line = OrderLineFactory(
            order=order, sku=SkuFactory(), quantity=2, quantity_shipped=2, status=LineStatus.SHIPPED
        )
        rma = services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, 2)], actor="bench")
        made.append((rma.pk, line.sku.code, line.sku_id))
    return made


def _rates(values: list[float]) -> str:
    return ", ".join(f"{x:,.0f}" for x in values)


def test_receiving_returns_throughput():
    node = LocationFactory()
    raw_rates, service_rates, replay_rates, statements = [], [], [], []
    for round_index in range(ROUNDS):
        rmas = _rmas(RMAS, node)
        # raw: the ledger write alone, same units
        start = time.perf_counter()
        for index, (_, _, sku_id) in enumerate(rmas):
            inventory_services.stock_returns_apply(
                units=[
                    inventory_services.ReturnedUnits(sku_id, node.pk, 1, "restock", key=f"raw:{round_index}:{index}:a"),
                    inventory_services.ReturnedUnits(sku_id, node.pk, 1, "damaged", key=f"raw:{round_index}:{index}:b"),
                ],
                reference="bench",
                actor="bench",
            )
        raw_rates.append(len(rmas) / (time.perf_counter() - start))
        start = time.perf_counter()
        for rma_id, code, _ in rmas:
            items = [ReceiveItem(1, "restock", sku=code), ReceiveItem(1, "damaged", sku=code)]
            services.rma_receive(
                rma_id=rma_id, location_id=node.pk, items=items, actor="bench", idempotency_key=f"r{rma_id}"
            )
        service_rates.append(len(rmas) / (time.perf_counter() - start))
        start = time.perf_counter()
        for rma_id, code, _ in rmas:
            items = [ReceiveItem(1, "restock", sku=code), ReceiveItem(1, "damaged", sku=code)]
            result = services.rma_receive(
                rma_id=rma_id, location_id=node.pk, items=items, actor="bench", idempotency_key=f"r{rma_id}"
            )
            assert result.replayed
        replay_rates.append(len(rmas) / (time.perf_counter() - start))
        # statements of one fresh receipt
        (extra,) = _rmas(1, node)
        with CaptureQueriesContext(connection) as captured:
            services.rma_receive(
                rma_id=extra[0], location_id=node.pk, items=[ReceiveItem(2, "restock", sku=extra[1])], actor="bench"
            )
        statements.append(len(captured.captured_queries))
    raw, service, replay = (statistics.median(x) for x in (raw_rates, service_rates, replay_rates))
    print(
        f"\nreturns receiving: raw {raw:.0f}/s, service {service:.0f}/s ({service / raw:.2f}x), replay {replay:.0f}/s"
    )
    print(f"statements per receipt: {statements}")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    service_row = (
        "| `returns.services.rma_receive` (RMA lock, receipt and unit rows, ledger, order's returned units and "
        f"status, audit rows) | {service:,.0f} | **{service / raw:.2f}** |"
    )
    write_section(
        SECTION,
        f"""## Returns: receiving (issue #18)

{RMAS} RMAs of 2 units received one receipt each (1 restocked, 1 damaged), one process, {ROUNDS} rounds;
medians. Run {stamp}, `WAYBILL_BENCH=1 pytest tests/benchmarks -m benchmark -k returns`. Taken while other
sessions loaded the 2 cores: absolute rates are noisy, the ratio less so.

| Shape | receipts/s | x raw |
|---|---:|---:|
| Raw limit: `inventory.services.stock_returns_apply` alone (the ledger write, same units) | {raw:,.0f} | 1.00 |
{service_row}
| The same receipts replayed (same key: nothing written) | {replay:,.0f} | {replay / raw:.2f} |

Per round: raw {_rates(raw_rates)}/s; service {_rates(service_rates)}/s;
replay {_rates(replay_rates)}/s. Statements per fresh receipt: {", ".join(map(str, statements))}.
Receiving is a person or a 3PL posting a parcel, not a hot path: the goal is correctness (one restock per receipt,
also under replays and racing processes). Most statements are savepoints of the nested services and the
order's status refresh; batching them is left until receiving volumes call for it.
""",
    )
