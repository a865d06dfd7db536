"""A simulated WMS and carrier for the demo: they act on Waybill only from outside, over HTTP, as real
ones would. The WMS polls each node's released shipments through the node API (``Authorization: Node``)
and acknowledges, picks, packs and ships them with a carrier and tracking number, now and then short-
picking a unit. The carrier then posts scans to the signed tracking webhook (in transit, out for
delivery, delivered), now and then a late scan (a delay) or a delivery exception, so the demo's orders
flow to Delivered and exceptions arise on their own.

Every ``count_every_seconds`` the WMS also cycle-counts a few SKUs of one node (the nodes in turn) and posts
the counts as a stock snapshot (``POST /api/v1/stock-levels/snapshot/``, an integration token), now and then
with a miscount (``miscount_rate``): a unit off, applied within the node's tolerance, or several, proposed to a
person, so the nodes' reconciliation has something to show.

Time is compressed: a shipment moves one step every ``step_seconds``. Nothing here touches the database:
``run_warehouse`` (the management command) creates the node tokens (and the counts' token) and hands their
keys over.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from fulfillment.webhooks import SIGNATURE_HEADER, signature_for

log = logging.getLogger("waybill.warehouse")

CARRIERS = [("UPS", "Ground"), ("USPS", "Priority"), ("FEDEX", "Home Delivery"), ("DHL", "Parcel Expedited")]
ACTIVE = ("released", "acknowledged", "picking", "packed", "shipped", "in_transit", "out_for_delivery", "exception")
CITIES = ["Memphis, TN", "Louisville, KY", "Indianapolis, IN", "Dallas, TX", "Ontario, CA", "Allentown, PA"]


@dataclass
class SimConfig:
    base_url: str
    step_seconds: float = 4.0
    short_pick_rate: float = 0.03
    delay_rate: float = 0.06
    exception_rate: float = 0.02
    webhook_secret: str = ""
    seed: int | None = None
    # Cycle counts: seconds between two (0: none), the integration token they are posted with, and the share
    # of counts with one miscounted SKU.
    count_every_seconds: float = 0.0
    stock_token: str = ""
    miscount_rate: float = 0.3
    count_skus: int = 5


@dataclass
class Parcel:
    """What the carrier remembers of a parcel: a delayed one waits a few steps longer."""

    wait_steps: int = 0
    scans: int = 0


@dataclass
class TickStats:
    acknowledged: int = 0
    picking: int = 0
    packed: int = 0
    shipped: int = 0
    short_picked: int = 0
    scans: int = 0
    delivered: int = 0
    late_scans: int = 0
    exceptions: int = 0
    counts: int = 0
    miscounts: int = 0
    errors: list[str] = field(default_factory=list)

    def total(self) -> int:
        return self.acknowledged + self.picking + self.packed + self.shipped + self.short_picked + self.scans


class WarehouseSimulator:
    def __init__(self, config: SimConfig, tokens: dict[str, str], client: httpx.Client | None = None) -> None:
        self.config = config
        self.tokens = tokens  # node code -> node API key
        self.client = client or httpx.Client(base_url=config.base_url, timeout=15.0)
        self.random = random.Random(config.seed)  # noqa: S311 - a demo's dice, not a secret
        self.last_step: dict[int, float] = {}
        self.parcels: dict[int, Parcel] = {}
        self.last_count: float | None = None
        self.count_turn = 0

    # -- the WMS, through the node API ---------------------------------------------------------------------

    def _node(self, code: str) -> dict[str, str]:
        return {"Authorization": f"Node {self.tokens[code]}"}

    def _post(self, path: str, headers: dict, body: dict | None, stats: TickStats, key: str) -> dict | None:
        response = self.client.post(
            path, headers={**headers, "Idempotency-Key": key}, json=body if body is not None else {}
        )
        if response.status_code >= 400:
            stats.errors.append(f"POST {path}: {response.status_code} {response.text[:200]}")
            return None
        return response.json()

    def _due(self, shipment_id: int, now: float) -> bool:
        seen = self.last_step.get(shipment_id)
        if seen is None:
            self.last_step[shipment_id] = now
            return False
        return now - seen >= self.config.step_seconds

    def tick(self, now: float | None = None) -> TickStats:
        now = time.monotonic() if now is None else now
        stats = TickStats()
        for code in sorted(self.tokens):
            try:
                response = self.client.get(
                    "/api/v1/fulfillment/shipments/",
                    headers=self._node(code),
                    params=[("status", s) for s in ACTIVE] + [("page_size", "200")],
                )
            except httpx.HTTPError as exc:
                stats.errors.append(f"{code}: {exc}")
                continue
            if response.status_code != 200:
                stats.errors.append(f"{code}: list {response.status_code} {response.text[:200]}")
                continue
            for shipment in response.json().get("results", []):
                if shipment["kind"] != "ship" or not self._due(shipment["id"], now):
                    continue
                try:
                    self._advance(code, shipment, stats)
                except httpx.HTTPError as exc:
                    stats.errors.append(f"shipment {shipment['id']}: {exc}")
                self.last_step[shipment["id"]] = now
        if self._count_due(now):
            try:
                self._cycle_count(stats)
            except httpx.HTTPError as exc:
                stats.errors.append(f"cycle count: {exc}")
        return stats

    # -- cycle counts, posted as stock snapshots ---------------------------------------------------------------

    def _count_due(self, now: float) -> bool:
        if not self.config.count_every_seconds or not self.config.stock_token:
            return False
        if self.last_count is not None and now - self.last_count < self.config.count_every_seconds:
            return False
        self.last_count = now
        return True

    def _cycle_count(self, stats: TickStats) -> None:
        """Count a few unreserved SKUs of the next node and post the counts; now and then one is miscounted."""
        codes = sorted(self.tokens)
        code = codes[self.count_turn % len(codes)]
        self.count_turn += 1
        auth = {"Authorization": f"Bearer {self.config.stock_token}"}
        response = self.client.get("/api/v1/stock-levels/", headers=auth, params={"location": code, "page_size": "200"})
        if response.status_code != 200:
            stats.errors.append(f"{code}: stock levels {response.status_code} {response.text[:200]}")
            return
        # Unreserved rows only: a count below what is reserved there is refused (409), as a real one would be.
        levels = [row for row in response.json().get("results", []) if row["reserved"] == 0 and row["on_hand"] > 0]
        if not levels:
            return
        chosen = self.random.sample(levels, min(self.config.count_skus, len(levels)))
        counts = {row["sku_code"]: row["on_hand"] for row in chosen}
        if self.random.random() < self.config.miscount_rate:
            row = self.random.choice(chosen)
            off = self.random.choice([-1, 1, 2, -8, 6])
            counts[row["sku_code"]] = max(row["on_hand"] + off, 0)
            stats.miscounts += 1
        body = {
            "idempotency_key": f"cycle-count-{code}-{uuid.uuid4().hex[:12]}",
            "source": f"wms:{code.lower()}",
            "rows": [{"sku": sku, "location": code, "on_hand": n} for sku, n in sorted(counts.items())],
        }
        answer = self.client.post("/api/v1/stock-levels/snapshot/", headers=auth, json=body)
        if answer.status_code != 200:
            stats.errors.append(f"{code}: snapshot {answer.status_code} {answer.text[:200]}")
            return
        stats.counts += 1

    def _advance(self, code: str, shipment: dict, stats: TickStats) -> None:
        sid, status = shipment["id"], shipment["status"]
        base = f"/api/v1/fulfillment/shipments/{sid}"
        node = self._node(code)
        if status == "released":
            if self._post(
                f"{base}/acknowledge/", node, {"external_reference": f"WMS-{code}-{sid}"}, stats, f"ack-{sid}"
            ):
                stats.acknowledged += 1
        elif status == "acknowledged":
            if self._post(f"{base}/picking/", node, None, stats, f"pick-{sid}"):
                stats.picking += 1
        elif status == "picking":
            open_lines = [line for line in shipment["lines"] if line["quantity_open"] > 0]
            if open_lines and self.random.random() < self.config.short_pick_rate:
                line = self.random.choice(open_lines)
                body = {
                    "lines": [{"order_line": line["order_line"], "quantity": 1}],
                    "reason": "bin empty at pick (simulated)",
                }
                if self._post(f"{base}/short-pick/", node, body, stats, f"short-{sid}-{line['order_line']}"):
                    stats.short_picked += 1
                return
            if self._post(f"{base}/packed/", node, None, stats, f"pack-{sid}"):
                stats.packed += 1
        elif status == "packed":
            if not shipment.get("may_ship", True):
                return  # a buyer's cancel request holds the order: the WMS waits
            carrier, service = self.random.choice(CARRIERS)
            body = {
                "carrier": carrier,
                "tracking_number": f"{carrier[:2]}{sid:08d}{self.random.randint(100, 999)}",
                "shipped_at": datetime.now(UTC).isoformat(),
                "service_level": service,
            }
            if self._post(f"{base}/shipped/", node, body, stats, f"ship-{sid}"):
                stats.shipped += 1
        elif shipment.get("tracking_number"):
            # A carrier scans only a parcel it has a number for: a shipment recorded shipped without one (shipped
            # in the channel's own tools, say) gets no scans from it.
            self._carrier_scan(code, shipment, stats)

    # -- the carrier, through the tracking webhook (or the node API's feed without a webhook secret) --------

    def _carrier_scan(self, code: str, shipment: dict, stats: TickStats) -> None:
        parcel = self.parcels.setdefault(shipment["id"], Parcel())
        if parcel.wait_steps > 0:
            parcel.wait_steps -= 1
            return
        status = shipment["status"]
        roll = self.random.random()
        if status == "shipped":
            if roll < self.config.delay_rate:
                scan, parcel.wait_steps = "delayed", 3
                stats.late_scans += 1
            else:
                scan = "in_transit"
        elif status == "in_transit":
            if roll < self.config.exception_rate:
                scan, parcel.wait_steps = "exception", 2
                stats.exceptions += 1
            else:
                scan = "out_for_delivery"
        elif status == "exception":
            scan = "in_transit"
        elif status == "out_for_delivery":
            scan = "delivered"
        else:
            return
        parcel.scans += 1
        event = {
            "id": f"{shipment['tracking_number']}-{parcel.scans}-{scan}",
            "status": scan,
            "occurred_at": datetime.now(UTC).isoformat(),
            "location": self.random.choice(CITIES),
            "description": {
                "delayed": "Delayed: weather at the hub (simulated)",
                "exception": "Delivery exception: address not accessible (simulated)",
            }.get(scan, scan.replace("_", " ").capitalize()),
        }
        update = {
            "tracking_number": shipment["tracking_number"],
            "carrier": shipment["carrier"] or "",
            "source": f"carrier:{(shipment['carrier'] or 'sim').lower()}",
            "events": [event],
        }
        if self.config.webhook_secret:
            body = json.dumps(update).encode()
            response = self.client.post(
                "/webhooks/tracking/",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: signature_for(body, self.config.webhook_secret),
                },
            )
        else:
            response = self.client.post(
                "/api/v1/fulfillment/tracking/",
                json=update,
                headers={**self._node(code), "Idempotency-Key": event["id"]},
            )
        if response.status_code >= 400:
            stats.errors.append(f"scan {event['id']}: {response.status_code} {response.text[:200]}")
            return
        stats.scans += 1
        if scan == "delivered":
            stats.delivered += 1
            self.parcels.pop(shipment["id"], None)

    def run(self, *, tick_seconds: float, should_stop, report=log.info) -> None:
        while not should_stop():
            started = time.monotonic()
            stats = self.tick()
            if stats.total() or stats.counts or stats.errors:
                report(
                    f"ack {stats.acknowledged} pick {stats.picking} pack {stats.packed} ship {stats.shipped} "
                    f"short {stats.short_picked} scans {stats.scans} (delivered {stats.delivered}, late "
                    f"{stats.late_scans}, exception {stats.exceptions}) counts {stats.counts} (miscounted "
                    f"{stats.miscounts}) errors {len(stats.errors)}"
                )
                for error in stats.errors[:5]:
                    report(f"error: {error}")
            time.sleep(max(0.0, tick_seconds - (time.monotonic() - started)))
