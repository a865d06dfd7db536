"""`manage.py run_warehouse`: the demo's simulated WMS and carrier (fulfillment/warehouse_sim.py).

Creates one node API token per active shipping node (the previous simulator tokens are revoked) and, for the
WMS's cycle counts, an integration token of the first active superuser (inventory read and write), then acts
on Waybill over HTTP only: the node API and the stock snapshot API for the WMS, the signed tracking webhook for
the carrier.
"""

from __future__ import annotations

import signal
import time

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from config.security.models import IntegrationToken
from config.security.tokens import integration_token_create, integration_token_revoke
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
        parser.add_argument(
            "--count-every", type=float, default=90.0, help="Seconds between two cycle counts (0: no counts)"
        )
        parser.add_argument("--miscount-rate", type=float, default=0.3, help="Share of counts with a miscount")

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
        stock_token = self._stock_token() if options["count_every"] > 0 else ""
        config = SimConfig(
            base_url=options["base_url"],
            step_seconds=options["step"],
            short_pick_rate=options["short_pick_rate"],
            delay_rate=options["delay_rate"],
            exception_rate=options["exception_rate"],
            webhook_secret=settings.TRACKING_WEBHOOK_SECRET,
            seed=options["seed"],
            count_every_seconds=options["count_every"] if stock_token else 0.0,
            stock_token=stock_token,
            miscount_rate=options["miscount_rate"],
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

    def _stock_token(self) -> str:
        """The cycle counts' integration token (the previous simulator's revoked); "" without a superuser."""
        for token in IntegrationToken.objects.filter(name=SIMULATOR_NAME, revoked_at__isnull=True):
            integration_token_revoke(token_id=token.pk, actor=ACTOR)
        user = get_user_model().objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if user is None:
            self.stderr.write("no active superuser: the simulated WMS sends no cycle counts")
            return ""
        _, key = integration_token_create(
            user_id=user.pk, name=SIMULATOR_NAME, scopes=["inventory:read", "inventory:write"], days=30, actor=ACTOR
        )
        return key
