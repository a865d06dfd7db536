"""Detection in seconds: the delay from a late carrier scan to its open exception case.

A carrier posts a "delayed" scan for a shipped parcel to the signed tracking webhook over HTTP (the live
server); the case opens in the webhook's transaction. Measured per scan: from just before the POST to
the case's ``created_at`` (the server's clock, same machine), and to the moment the case is readable
by another connection (after the answer). Then the periodic detector: one pass over shipments past
their ship-by (late shipments), whose worst-case delay is the beat interval plus the pass.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.utils import timezone

from fulfillment import services
from fulfillment.models import Carrier, Shipment
from fulfillment.services.detection import exceptions_detect, shipment_case_key
from fulfillment.webhooks import SIGNATURE_HEADER, signature_for
from inventory import services as inventory
from orders.models import ExceptionCase, ExceptionKind
from tests.benchmarks.results import write_section
from tests.factories import ChannelAccountFactory, LocationFactory, OrderFactory, OrderLineFactory, SkuFactory

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]

SCANS = 200
LATE = 500
SECRET = "bench-webhook-secret"
SECTION = "exceptions-detection"


def _orders(n: int, node, sku, account) -> list[int]:
    ids = []
    for _ in range(n):
        order = OrderFactory(account=account, ship_to__postal_code="94105")
        OrderLineFactory(order=order, sku=sku, quantity=1)
        ids.append(order.pk)
    services.orders_route(order_ids=ids, actor="router")
    return ids


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _pg_version() -> str:
    from django.db import connection

    major, minor = divmod(connection.pg_version, 10000)
    return f"{major}.{minor}"


def _row(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ms | {_pct(values, 0.95):.1f} ms | {max(values):.1f} ms"


def test_bench_late_scan_to_open_case(live_server, settings):
    settings.TRACKING_WEBHOOK_SECRET = SECRET
    account = ChannelAccountFactory(kind="amazon", name="bench-amazon")
    node = LocationFactory(code="BENCH-DC", postal_code="94107", cutoff_time=None)
    account.eligible_locations.add(node)
    sku = SkuFactory(code="BENCH-SKU")
    inventory.stock_receive(sku=sku, location=node, quantity=SCANS + LATE + 10, actor="bench")
    Carrier.objects.get_or_create(code="UPS", defaults={"name": "UPS"})
    order_ids = _orders(SCANS, node, sku, account)
    shipments = list(Shipment.objects.filter(order_id__in=order_ids).order_by("pk"))
    shipped_at = timezone.now() - timedelta(hours=1)
    for s in shipments:
        services.shipment_acknowledge(shipment=s.pk, actor="wms:bench", external_reference="")
        services.shipment_pick_start(shipment=s.pk, actor="wms:bench")
        services.shipment_pack(shipment=s.pk, actor="wms:bench")
        services.shipment_ship(
            shipment=s.pk, carrier_code="UPS", tracking_number=f"1ZB{s.pk:09d}", shipped_at=shipped_at, actor="wms:b"
        )

    to_created, to_visible, round_trips = [], [], []
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        for s in shipments:
            body = json.dumps(
                {
                    "tracking_number": f"1ZB{s.pk:09d}",
                    "carrier": "UPS",
                    "source": "carrier:ups",
                    "events": [
                        {
                            "id": f"late-{s.pk}",
                            "status": "delayed",
                            "occurred_at": datetime.now(UTC).isoformat(),
                            "description": "Delayed: missed the linehaul",
                            "location": "Memphis, TN",
                        }
                    ],
                }
            ).encode()
            sent = time.time()
            response = client.post(
                "/webhooks/tracking/",
                content=body,
                headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature_for(body, SECRET)},
            )
            answered = time.time()
            assert response.status_code == 200, response.text
            case = ExceptionCase.objects.get(dedupe_key=shipment_case_key(ExceptionKind.DELIVERY_LATE, s.pk))
            visible = time.time()
            to_created.append((case.created_at.timestamp() - sent) * 1000)
            to_visible.append((visible - sent) * 1000)
            round_trips.append((answered - sent) * 1000)

    # The periodic detector: shipments past their ship-by, not shipped.
    late_ids = _orders(LATE, node, sku, account)
    Shipment.objects.filter(order_id__in=late_ids).update(ship_by=timezone.now() - timedelta(minutes=5))
    started = time.perf_counter()
    result = exceptions_detect(actor="detector")
    detect_ms = (time.perf_counter() - started) * 1000
    assert len(result.late) == LATE
    interval = float(settings.WAYBILL_DETECT_SECONDS)

    body = f"""## Exceptions: detection delay (issue #19)

Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `make bench` (`-k exceptions`), PostgreSQL {_pg_version()}.
{SCANS} "delayed" carrier scans, each POSTed alone to the signed tracking webhook of the live server (one
thread, Django's test server), each opening one "Delivery late" case in the webhook's transaction.

| Late carrier scan → open case | p50 | p95 | max |
|---|---:|---:|---:|
| to the case's `created_at` | {_row(to_created)} |
| to the case readable by another connection | {_row(to_visible)} |
| the webhook's HTTP round trip | {_row(round_trips)} |

Periodic detector (`exceptions_detect_task`, beat every {interval:g} s): one pass over {LATE} shipments past
their ship-by opened {len(result.late)} "Late shipment" cases in {detect_ms:,.0f} ms, so a late shipment has its
case within {interval:g} s + {detect_ms / 1000:.1f} s of its ship-by at most.
Noise: a shared 2-core machine; figures move 30-50% between runs.
"""
    print("\n" + body)
    write_section(SECTION, body)
