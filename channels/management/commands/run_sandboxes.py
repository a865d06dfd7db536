"""Run the sandbox marketplaces on the demo ports until interrupted; orders stream in over time."""

from __future__ import annotations

import signal
import threading
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from channels.management.commands.seed_demo import plant_demo_orders
from channels.models import ChannelAccount, ChannelKind
from channels.registry import BY_KIND, MARKETPLACES
from channels.sandbox import SANDBOXES, sandbox_class
from channels.sandbox.base import utcnow
from channels.sandbox.shopify import LOCATION_ID, schema_path


class Command(BaseCommand):
    help = (
        "Start the sandbox marketplaces ("
        + ", ".join(f"{m.label} :{m.demo_port}" for m in sorted(MARKETPLACES, key=lambda m: m.demo_port))
        + ") with generated orders over time."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--only", nargs="*", choices=sorted(SANDBOXES), help="Channel kinds to run (default: all)")
        parser.add_argument("--rate", type=float, default=6.0, help="New orders per minute per sandbox")
        parser.add_argument("--backlog", type=int, default=60, help="Orders already there at start")
        parser.add_argument(
            "--webhook-base",
            default="http://127.0.0.1:8000",
            help="Where Waybill listens: Shopify and TikTok webhooks go to <base>/webhooks/<kind>/<account id>/",
        )

    def handle(self, *args, host, only, rate, backlog, webhook_base, **options):
        servers = []
        for kind in only or sorted(SANDBOXES):
            _, port = SANDBOXES[kind]
            if kind == ChannelKind.SHOPIFY and not schema_path().exists():
                # The Shopify sandbox executes queries against Shopify's saved schema; without it the
                # other channels still run.
                self.stderr.write(
                    f"shopify sandbox not started: the Admin GraphQL schema is missing at {schema_path()}. "
                    "Put the channel-specs folder beside the checkout (../shared/channel-specs) or set "
                    "WAYBILL_CHANNEL_SPECS to it."
                )
                continue
            app = sandbox_class(kind)()
            if kind == ChannelKind.SHOPIFY:
                app.state.pickup_rate = 0.1  # the web store offers local pickup at its San Francisco store
            start = utcnow() - timedelta(hours=2)
            for index in range(backlog):
                app.state.generate(1, created_at=start + timedelta(seconds=index * 7200 // max(backlog, 1)))
            # The demo orders seed_demo wrote exist at the channel too: they can be shipped and cancelled there.
            planted = plant_demo_orders(app)
            # Returns (issue #18): a few buyers have already asked to return shipped demo orders; more follow
            # in the sandbox's background life (SandboxApp.returns_tick).
            opened = self._open_demo_returns(app)
            if kind == ChannelKind.SHOPIFY:
                self._wire_shopify(app, webhook_base)
            if kind == ChannelKind.TIKTOK:
                self._wire_tiktok(app, webhook_base)
            try:
                servers.append(app.serve(host, port, rate_per_minute=rate))
            except OSError as exc:
                raise CommandError(f"cannot listen on {host}:{port} for the {kind} sandbox: {exc}") from exc
            self.stdout.write(
                f"{kind} sandbox on http://{host}:{port} ({backlog} orders, {planted} demo orders, "
                f"{opened} returns, {rate}/min)"
            )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        for server in servers:
            server.stop()

    def _wire_shopify(self, app, webhook_base: str) -> None:
        """Point the sandbox's webhooks at the demo Shopify account, and give it the sandbox location."""
        port = BY_KIND[ChannelKind.SHOPIFY].demo_port
        account = ChannelAccount.objects.filter(kind=ChannelKind.SHOPIFY, api_base_url__contains=f":{port}").first()
        if account is None:
            return
        app.webhook_url = f"{webhook_base.rstrip('/')}/webhooks/shopify/{account.pk}/"
        if not account.inventory_location_id:
            ChannelAccount.objects.filter(pk=account.pk).update(inventory_location_id=LOCATION_ID)

    def _wire_tiktok(self, app, webhook_base: str) -> None:
        """Point the sandbox's webhooks at the demo TikTok account, and give it the sandbox warehouse."""
        port = BY_KIND[ChannelKind.TIKTOK].demo_port
        account = ChannelAccount.objects.filter(kind=ChannelKind.TIKTOK, api_base_url__contains=f":{port}").first()
        if account is None:
            return
        app.webhook_url = f"{webhook_base.rstrip('/')}/webhooks/tiktok/{account.pk}/"
        if not account.inventory_location_id:
            ChannelAccount.objects.filter(pk=account.pk).update(inventory_location_id=app.warehouse_id)

    @staticmethod
    def _open_demo_returns(app, count: int = 3) -> int:
        """Returns of shipped demo orders at the marketplace, so the console's Returns queue fills at once."""
        opened = 0
        with app.state.lock:
            shipped = [o for o in app.state.orders.values() if any(line.shipped for line in o.lines)]
            for order in shipped[:count]:
                made = app.state.open_return(order, status="approved" if opened % 2 else "requested")
                opened += not isinstance(made, str)
        return opened
