"""`manage.py run_warehouse`: the demo's simulated WMS and carrier (fulfillment/warehouse_sim.py).

Creates one node API token per active shipping node (the previous simulator tokens are revoked), then
acts on Waybill over HTTP only: the node API for the WMS, the signed tracking webhook for the carrier.
"""

from __future__ import annotations

import signal
import time

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand

from fulfillment.models import NodeApiToken
from fulfillment.services import node_token_create, node_token_revoke
from fulfillment.warehouse_sim import SimConfig, WarehouseSimulator
from inventory.models import Location

SIMULATOR_NAME = "demo warehouse simulator"
ACTOR = "demo-warehouse"


class Command(BaseCommand):
    help = "Run a simulated WMS and carrier against a running Waybill (the demo's warehouse)."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--tick", type=float, default=2.0, help="Seconds between polls")
        parser.add_argument("--step", type=float, default=4.0, help="Seconds a shipment waits between steps")
        parser.add_argument("--short-pick-rate", type=float, default=0.03)
        parser.add_argument("--delay-rate", type=float, default=0.06, help="Share of parcels with a late scan")
        parser.add_argument("--exception-rate", type=float, default=0.02)
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, **options):
        for token in NodeApiToken.objects.filter(name=SIMULATOR_NAME, revoked_at__isnull=True):
            node_token_revoke(token=token, actor=ACTOR)
        tokens = {}
        for location in Location.objects.filter(is_active=True, can_ship=True).order_by("code"):
            _, key = node_token_create(location=location, name=SIMULATOR_NAME, actor=ACTOR)
            tokens[location.code] = key
        if not tokens:
            self.stderr.write("no active shipping node: nothing to simulate")
            return
        config = SimConfig(
            base_url=options["base_url"],
            step_seconds=options["step"],
            short_pick_rate=options["short_pick_rate"],
            delay_rate=options["delay_rate"],
            exception_rate=options["exception_rate"],
            webhook_secret=settings.TRACKING_WEBHOOK_SECRET,
            seed=options["seed"],
        )
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        self.stdout.write(
            f"[warehouse] simulating {', '.join(sorted(tokens))} against {config.base_url} "
            f"(carrier scans via {'the tracking webhook' if config.webhook_secret else 'the node API feed'})"
        )
        with httpx.Client(base_url=config.base_url, timeout=15.0) as client:
            for _ in range(60):  # the web process may still be starting
                try:
                    client.get("/login/")
                    break
                except httpx.HTTPError:
                    time.sleep(1)
            WarehouseSimulator(config, tokens, client=client).run(
                tick_seconds=options["tick"],
                should_stop=lambda: bool(stopping),
                report=lambda line: self.stdout.write(f"[warehouse] {line}"),
            )
