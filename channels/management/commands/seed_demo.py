"""Demo data: 5 channel accounts, 4 nodes (a store and a 3PL among them), ~200 SKUs with stock,
and a few hundred orders across statuses, written through the services. Runs once; a second run
finds the accounts and changes nothing.

Every demo order also exists at its channel: its ids are the ones the channel's sandbox gives an order
of its number (``demo_ids``), and ``plant_demo_orders`` puts each demo order, as Waybill has it (lines,
quantities shipped and cancelled, address), into a sandbox when ``run_sandboxes`` starts one, so every
demo order can be shipped or cancelled at the channel without "order not found"."""

from __future__ import annotations

import random
from datetime import date, time, timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from channels.demo_history import amazon_history_orders
from channels.models import ChannelAccount, ChannelKind, ChannelLocation, Listing
from channels.registry import MARKETPLACES
from channels.sandbox.amazon import AmazonState
from channels.sandbox.base import SandboxApp, SandboxLine, SandboxOrder, SandboxState
from channels.sandbox.ebay import EbayState, line_item_id
from channels.sandbox.shopify import LOCATION_ID as SHOPIFY_LOCATION_ID
from channels.sandbox.shopify import STORE_LOCATION_ID, STORE_LOCATION_NAME, ShopifyState
from channels.sandbox.shopify import variant_ids as shopify_variant_ids
from channels.sandbox.tiktok import WAREHOUSE_ID as TIKTOK_WAREHOUSE_ID
from channels.sandbox.tiktok import TikTokState
from channels.sandbox.tiktok import product_id_for as tiktok_product_id_for
from channels.sandbox.tiktok import sku_id_for as tiktok_sku_id_for
from channels.sandbox.walmart import WalmartState
from channels.services import channel_account_set_credentials
from inventory import services as inventory_services
from inventory.models import (
    Location,
    LocationKind,
    MovementReason,
    Reservation,
    Sku,
    StockLevel,
    StockMovement,
)
from orders import services as order_services
from orders.models import ExceptionKind, HoldKind, LineStatus, Order, OrderLine, OrderStatus, Severity

ACTOR = "seed:demo"

# The DCs close on the days UPS and FedEx do not pick up; the store and the 3PL ship every day.
US_CARRIER_HOLIDAYS = [date(2026, 11, 26), date(2026, 12, 25), date(2027, 1, 1), date(2027, 5, 31), date(2027, 7, 5)]

LOCATIONS = [
    dict(
        code="DAL1",
        name="Dallas DC",
        kind=LocationKind.WAREHOUSE,
        city="Dallas",
        region="TX",
        postal_code="75261",
        latitude=Decimal("32.8998"),
        longitude=Decimal("-97.0403"),
        timezone="America/Chicago",
        cutoff_time=time(15, 0),
        ship_days=[0, 1, 2, 3, 4, 5],
        closed_on=US_CARRIER_HOLIDAYS,
        daily_capacity=2500,
        cost_per_shipment=Decimal("6.10"),
        priority=1,
    ),
    dict(
        code="EWR1",
        name="Edison NJ DC",
        kind=LocationKind.WAREHOUSE,
        city="Edison",
        region="NJ",
        postal_code="08817",
        latitude=Decimal("40.5187"),
        longitude=Decimal("-74.4121"),
        timezone="America/New_York",
        cutoff_time=time(16, 0),
        ship_days=[0, 1, 2, 3, 4],
        closed_on=US_CARRIER_HOLIDAYS,
        daily_capacity=1800,
        cost_per_shipment=Decimal("6.80"),
        priority=2,
    ),
    dict(
        code="SFO-STORE",
        name="San Francisco Union Sq store",
        kind=LocationKind.STORE,
        city="San Francisco",
        region="CA",
        postal_code="94108",
        latitude=Decimal("37.7880"),
        longitude=Decimal("-122.4075"),
        timezone="America/Los_Angeles",
        cutoff_time=time(14, 0),
        daily_capacity=120,
        cost_per_shipment=Decimal("9.50"),
        can_pickup=True,
        ships_from_store=True,
        priority=5,
    ),
    dict(
        code="RNO-3PL",
        name="Reno 3PL (ShipRight)",
        kind=LocationKind.THREEPL,
        city="Reno",
        region="NV",
        postal_code="89502",
        latitude=Decimal("39.4996"),
        longitude=Decimal("-119.7681"),
        timezone="America/Los_Angeles",
        cutoff_time=time(13, 0),
        daily_capacity=3000,
        cost_per_shipment=Decimal("5.40"),
        priority=3,
    ),
]

# Each marketplace's demo account at its sandbox (the port comes from channels.registry).
DEMO_ACCOUNTS = {
    ChannelKind.AMAZON: dict(
        name="amazon-us",
        marketplace_ids=["ATVPDKIKX0DER"],
        seller_id="A2DEMOSELLER01",
        creds={
            "lwa_client_id": "amzn1.application-oa2-client.demo",
            "lwa_client_secret": "demo-secret",
            "refresh_token": "Atzr|demo",
        },
    ),
    ChannelKind.WALMART: dict(
        name="walmart-us",
        marketplace_ids=["WALMART_US"],
        creds={"client_id": "demo-walmart-client", "client_secret": "demo-walmart-secret"},
    ),
    ChannelKind.SHOPIFY: dict(
        name="shopify-main",
        api_version="2026-10",
        creds={"access_token": "shpat_demo", "webhook_secret": "demo-webhook-secret"},
    ),
    ChannelKind.EBAY: dict(
        name="ebay-us",
        marketplace_ids=["EBAY_US"],
        creds={"client_id": "demo-ebay", "client_secret": "demo-ebay-secret", "refresh_token": "v^1.1#demo"},
    ),
    ChannelKind.TIKTOK: dict(
        name="tiktok-us",
        seller_id="7495000000000000001",
        creds={
            "app_key": "demoappkey",
            "app_secret": "demoappsecret",
            "access_token": "TTP_demo",
            "shop_cipher": "ROW_demo",
        },
    ),
}
ACCOUNTS = [
    dict(kind=marketplace.kind, port=marketplace.demo_port, **DEMO_ACCOUNTS[marketplace.kind])
    for marketplace in MARKETPLACES
]

DEMO_ACCOUNT_NAMES = {spec["kind"]: spec["name"] for spec in ACCOUNTS}

WORDS = [
    "Canvas",
    "Merino",
    "Trail",
    "Cedar",
    "Harbor",
    "Summit",
    "Linen",
    "Copper",
    "Alpine",
    "Coastal",
    "Granite",
    "Willow",
    "Indigo",
    "Ember",
    "Nordic",
    "Sierra",
]
PRODUCTS = [
    "Backpack",
    "Beanie",
    "Water Bottle",
    "Tote",
    "Socks (3-pack)",
    "Jacket",
    "Mug",
    "Blanket",
    "Headlamp",
    "Notebook",
    "Scarf",
    "Gloves",
    "Cap",
]
NAMES = [
    "José Müller",
    "Zoë Ōtani",
    "李雷",
    "Amélie Dubois",
    "Siobhán O'Neill",
    "Łukasz Zieliński",
    "Ngozi Okafor",
    "Björn Åkesson",
    "Priya Raman",
    "Maria Gómez",
    "Dmitri Ivanov",
    "Aiyana Tso",
    "Chloé Martin",
    "Kenji Watanabe",
    "Fatima Zahra",
    "Liam Walsh",
]
CITIES = [
    ("Austin", "TX", "78701"),
    ("Brooklyn", "NY", "11201"),
    ("Portland", "OR", "97205"),
    ("Chicago", "IL", "60614"),
    ("Denver", "CO", "80202"),
    ("Miami", "FL", "33130"),
    ("Seattle", "WA", "98101"),
    ("Oakland", "CA", "94612"),
    ("Boston", "MA", "02116"),
]

# (status, how many) per demo run: a few hundred orders across the lifecycle.
PLAN = [
    (OrderStatus.PENDING, 25),
    (OrderStatus.OPEN, 70),
    (OrderStatus.BACKORDERED, 15),
    (OrderStatus.ALLOCATED, 35),
    (OrderStatus.RELEASED, 30),
    (OrderStatus.PARTIALLY_SHIPPED, 10),
    (OrderStatus.SHIPPED, 70),
    (OrderStatus.DELIVERED, 45),
    (OrderStatus.CANCELLED, 20),
]


OPEN_STATUSES = {
    OrderStatus.PENDING,
    OrderStatus.OPEN,
    OrderStatus.BACKORDERED,
    OrderStatus.ALLOCATED,
    OrderStatus.RELEASED,
    OrderStatus.PARTIALLY_SHIPPED,
}


# Demo order numbers at the channels: far above the numbers the sandboxes give the orders they generate.
DEMO_NUMBER_BASE = 900_000
DEMO_ORDERS = sum(how_many for _, how_many in PLAN)
_STATES: dict[str, type[SandboxState]] = {
    ChannelKind.AMAZON: AmazonState,
    ChannelKind.WALMART: WalmartState,
    ChannelKind.SHOPIFY: ShopifyState,
    ChannelKind.EBAY: EbayState,
    ChannelKind.TIKTOK: TikTokState,
}


def _sandbox_line_id(kind: str, number: int, index: int) -> str:
    """The channel's own id of a demo order's ``index``-th line (from 1), as its sandbox renders it."""
    return line_item_id(number, index) if kind == ChannelKind.EBAY else f"{number}{index:02d}"


def demo_ids(kind: str, number: int, skus: list[str]) -> tuple[str, list[str], str]:
    """(order external id, line external ids, external reference) of demo order ``number`` as the
    account's connector reads them from its channel: Walmart numbers lines from 1, Shopify ids are GIDs,
    TikTok groups units by its SKU id."""
    order_id = _STATES[kind]().order_id_for(number)
    if kind == ChannelKind.WALMART:
        return order_id, [str(i) for i in range(1, len(skus) + 1)], ""
    if kind == ChannelKind.SHOPIFY:
        lines = [f"gid://shopify/LineItem/{_sandbox_line_id(kind, number, i)}" for i in range(1, len(skus) + 1)]
        return f"gid://shopify/Order/{order_id}", lines, f"#{number}"
    if kind == ChannelKind.TIKTOK:
        return order_id, [tiktok_sku_id_for(sku) for sku in skus], ""
    return order_id, [_sandbox_line_id(kind, number, i) for i in range(1, len(skus) + 1)], ""


def _sandbox_status(order: Order) -> str:
    return {
        OrderStatus.PENDING: "pending",
        OrderStatus.CANCELLED: "cancelled",
        OrderStatus.SHIPPED: "shipped",
        OrderStatus.DELIVERED: "shipped",
        OrderStatus.PARTIALLY_SHIPPED: "partially_shipped",
    }.get(order.status, "unshipped")


DEMO_INVENTORY_LOCATIONS = {ChannelKind.SHOPIFY: SHOPIFY_LOCATION_ID, ChannelKind.TIKTOK: TIKTOK_WAREHOUSE_ID}


def demo_sandbox_orders(account: ChannelAccount) -> list[SandboxOrder]:
    """The account's demo orders as its channel has them: Waybill's lines, quantities and address under
    the channel's ids."""
    kind = account.kind
    numbers: dict[str, int] = {}
    for count in range(1, DEMO_ORDERS + 1):
        number = DEMO_NUMBER_BASE + count
        numbers[demo_ids(kind, number, [])[0]] = number
    orders = (
        Order.objects.filter(account_id=account.pk, external_id__in=numbers)
        .select_related("ship_to")
        .prefetch_related("lines")
        .order_by("pk")
    )
    planted = []
    for order in orders:
        number = numbers[order.external_id]
        lines = sorted(order.lines.all(), key=lambda line: line.pk)
        address = order.ship_to
        planted.append(
            SandboxOrder(
                number=number,
                order_id=_STATES[kind]().order_id_for(number),
                created_at=order.placed_at,
                updated_at=order.source_updated_at or order.placed_at,
                status=_sandbox_status(order),
                lines=[
                    SandboxLine(
                        line_id=_sandbox_line_id(kind, number, index),
                        sku=line.channel_sku,
                        title=line.title,
                        quantity=line.quantity,
                        unit_price=line.unit_price,
                        shipped=line.quantity_shipped,
                        cancelled=line.quantity_cancelled,
                    )
                    for index, line in enumerate(lines, start=1)
                ],
                buyer_name=address.name if address else "",
                address={
                    "line1": address.line1 if address else "",
                    "line2": address.line2 if address else "",
                    "city": address.city if address else "",
                    "region": address.region if address else "",
                    "postal_code": address.postal_code if address else "",
                    "country_code": (address.country_code if address else "") or "US",
                    "phone": (address.phone if address else "") or "+1 555 0100",
                },
                currency=order.currency,
                paid=order.status != OrderStatus.PENDING,
                ship_by=order.ship_by,
                deliver_by=order.deliver_by,
                cancel_reason="BuyerCanceled" if order.status == OrderStatus.CANCELLED else "",
            )
        )
    return planted


def plant_demo_orders(app: SandboxApp, account: ChannelAccount | None = None) -> int:
    """Put the demo account's orders into its channel's sandbox (``run_sandboxes`` does it at start)."""
    account = account or ChannelAccount.objects.filter(kind=app.kind, name=DEMO_ACCOUNT_NAMES[app.kind]).first()
    if account is None:
        return 0
    orders = demo_sandbox_orders(account)
    # --- scorecards: Amazon recorded the history too (its Account Health report is computed from it) ---
    history = amazon_history_orders(account) if account.kind == ChannelKind.AMAZON else []
    with app.state.lock:
        for order in orders + history:
            app.state.orders[order.order_id] = order
        for order in history:
            if order.status == "cancelled":
                app.state.cancelled_by[order.order_id] = "MERCHANT" if order.cancel_reason == "NoInventory" else "BUYER"
    return len(orders) + len(history)


class Command(BaseCommand):
    help = "Load the demo data set once (accounts, nodes, SKUs with stock, orders across statuses)."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, seed: int, **options):
        if ChannelAccount.objects.filter(name="amazon-us").exists():
            self.stdout.write("Demo data already loaded; nothing to do.")
            return
        rng = random.Random(seed)
        # All or nothing: a failed seed leaves no half data set that the next run would skip.
        with transaction.atomic():
            locations = [Location.objects.create(country_code="US", **spec) for spec in LOCATIONS]
            accounts = self._accounts(locations)
            skus = self._skus(rng)
            self._stock(rng, skus, locations)
            self._listings(accounts, skus)
            created = self._orders(rng, accounts, skus, locations)
            self._counts(rng, skus, locations)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data loaded: {len(accounts)} accounts, {len(locations)} nodes, "
                f"{len(skus)} SKUs, {created} orders."
            )
        )

    # --- reconciliation of nodes: a count tolerance and one 3PL count with a miscount -----------------

    def _counts(self, rng, skus, locations):
        """The DCs and the 3PL apply counts within 3 units; the 3PL sends a count with two differences, one
        within it (applied) and one beyond it (proposed, with a case listing the ledger lines to check)."""
        for loc in locations:
            if loc.kind != "store":
                Location.objects.filter(pk=loc.pk).update(count_tolerance_units=3)
        threepl = next(loc for loc in locations if loc.kind == "threepl")
        levels = list(
            StockLevel.objects.filter(location=threepl, on_hand__gte=20, reserved=0).select_related("sku")[:2]
        )
        if len(levels) < 2:
            return
        (close, far) = levels
        inventory_services.stock_snapshot_apply(
            rows=[
                {"sku": close.sku.code, "location": threepl.code, "on_hand": close.on_hand - 1},
                {"sku": far.sku.code, "location": threepl.code, "on_hand": far.on_hand - 12},
            ],
            idempotency_key=f"demo-count-{threepl.code}-{rng.randint(1000, 9999)}",
            source=f"wms:{threepl.code.lower()}",
            actor=ACTOR,
        )

    # --- end of reconciliation of nodes ----------------------------------------------------------------

    def _accounts(self, locations):
        accounts = []
        for spec in ACCOUNTS:
            spec = dict(spec)
            creds = spec.pop("creds")
            port = spec.pop("port")
            account = ChannelAccount.objects.create(
                api_base_url=f"http://127.0.0.1:{port}",
                # Where stock is pushed at the sandboxes that need one, set before any worker pushes.
                inventory_location_id=DEMO_INVENTORY_LOCATIONS.get(spec["kind"], ""),
                sync_interval_seconds=30,
                handling_time_days=1,
                cutoff_time=time(14, 0),
                timezone="America/New_York",
                **spec,
            )
            channel_account_set_credentials(account=account, credentials=creds, actor=ACTOR)
            # Marketplaces ship from the DCs and the 3PL; Shopify (own web store) may also use the store.
            eligible = [loc for loc in locations if spec["kind"] == ChannelKind.SHOPIFY or loc.kind != "store"]
            account.eligible_locations.set(eligible)
            if spec["kind"] == ChannelKind.SHOPIFY:
                # Buyers choosing local pickup name the shop's store: it is this store.
                store = next(loc for loc in locations if loc.can_pickup)
                ChannelLocation.objects.create(
                    account=account, external_id=STORE_LOCATION_ID, name=STORE_LOCATION_NAME, location=store
                )
            accounts.append(account)
        return accounts

    def _skus(self, rng):
        skus = []
        for i in range(200):
            word, product = WORDS[i % len(WORDS)], PRODUCTS[(i * 7) % len(PRODUCTS)]
            skus.append(
                Sku(
                    code=f"WB-{1000 + i}",
                    name=f"{word} {product}",
                    barcode=f"0{840000000000 + i * 13}",
                    allow_backorder=i % 10 == 0,
                    is_preorder=i % 50 == 49,
                    safety_stock=2 if i % 4 == 0 else 0,
                    weight_grams=rng.randint(80, 2400),
                    unit_cost=Decimal(rng.randint(300, 6000)) / 100,
                    unit_cost_currency="USD",
                )
            )
        return Sku.objects.bulk_create(skus)

    def _stock(self, rng, skus, locations):
        levels, movements = [], []
        for sku in skus:
            for loc in locations:
                on_hand = 0 if rng.random() < 0.12 else rng.randint(1, 140 if loc.kind != "store" else 15)
                levels.append(StockLevel(sku=sku, location=loc, on_hand=on_hand, safety_stock=sku.safety_stock))
                if on_hand:
                    movements.append(
                        StockMovement(
                            sku=sku,
                            location=loc,
                            delta=on_hand,
                            reason=MovementReason.RECEIVE,
                            reference="OPENING-BALANCE",
                            actor=ACTOR,
                            balance_after=on_hand,
                            note="Opening balance from the demo data set",
                        )
                    )
        StockLevel.objects.bulk_create(levels)
        StockMovement.objects.bulk_create(movements)

    def _listings(self, accounts, skus):
        Listing.objects.bulk_create(
            Listing(account=account, sku=sku, channel_sku=sku.code, **self._catalog_ids(account.kind, sku.code))
            for account in accounts
            for sku in skus
        )

    @staticmethod
    def _catalog_ids(kind: str, code: str) -> dict:
        """The ids each demo account's channel (its sandbox) knows the SKU by, as a catalog import would
        record them: Shopify and TikTok inventory pushes address items by these ids, not by SKU."""
        if kind == ChannelKind.SHOPIFY:
            variant, inventory_item = shopify_variant_ids(code)
            return {"external_listing_id": variant, "external_variant_id": inventory_item}
        if kind == ChannelKind.TIKTOK:
            product = tiktok_product_id_for(code)
            return {"external_listing_id": product, "external_variant_id": f"{product}:{tiktok_sku_id_for(code)}"}
        return {"external_listing_id": f"{kind}-{code}"}

    def _orders(self, rng, accounts, skus, locations) -> int:
        now = timezone.now()
        count = 0
        for status, how_many in PLAN:
            for _ in range(how_many):
                count += 1
                account = accounts[count % len(accounts)]
                # Orders still to ship are recent (their ship-by ahead); finished ones spread over 20 days.
                hours = rng.randint(1, 30) if status in OPEN_STATUSES else rng.randint(48, 24 * 20)
                placed = now - timedelta(hours=hours, minutes=rng.randint(0, 59))
                chosen = rng.sample(skus, rng.choice([1, 1, 1, 2, 2, 3, 4]))
                name = rng.choice(NAMES)
                city, region, postal = rng.choice(CITIES)
                # The channel's ids for this order: the same order exists in the account's sandbox.
                external_id, line_ids, reference = demo_ids(
                    account.kind, DEMO_NUMBER_BASE + count, [sku.code for sku in chosen]
                )
                lines = [
                    order_services.LineInput(
                        external_id=line_ids[i],
                        channel_sku=sku.code,
                        sku_id=sku.pk,
                        title=sku.name,
                        quantity=rng.choice([1, 1, 1, 2, 3]),
                        unit_price=Decimal(rng.randint(999, 12999)) / 100,
                        ship_by=placed + timedelta(days=3),
                        allow_backorder=sku.allow_backorder,
                    )
                    for i, sku in enumerate(chosen)
                ]
                order = order_services.order_create(
                    account_id=account.pk,
                    external_id=external_id,
                    external_reference=reference,
                    placed_at=placed,
                    currency="USD",
                    lines=lines,
                    actor=f"sync:{account.name}",
                    status=OrderStatus.PENDING,
                    channel_status="Created",
                    ship_to=order_services.AddressInput(
                        name=name,
                        line1=f"{rng.randint(1, 999)} Market St",
                        city=city,
                        region=region,
                        postal_code=postal,
                        country_code="US",
                    ),
                    source_updated_at=placed,
                )
                self._advance(rng, order, status, locations, account)
        # A few orders for the queues: holds and exception cases.
        for order_id in (
            OrderLine.objects.filter(order__status=OrderStatus.OPEN).values_list("order_id", flat=True).distinct()[:8]
        ):
            order_services.hold_place(
                order=order_id,
                kind=rng.choice([HoldKind.FRAUD, HoldKind.ADDRESS, HoldKind.MANUAL]),
                reason="Flagged for review by the demo data",
                actor=ACTOR,
            )
        for order_id in (
            OrderLine.objects.filter(order__status=OrderStatus.BACKORDERED)
            .values_list("order_id", flat=True)
            .distinct()[:5]
        ):
            order_services.exception_case_open(
                kind=ExceptionKind.INSUFFICIENT_STOCK,
                title="No node has stock for every line",
                severity=Severity.HIGH,
                order_id=order_id,
                actor="router",
                due_at=now + timedelta(hours=4),
            )
        return count

    def _advance(self, rng, order, status, locations, account):
        actor = f"sync:{account.name}"
        if status == OrderStatus.PENDING:
            return
        if status == OrderStatus.CANCELLED:
            OrderLine.objects.filter(order=order).update(quantity_cancelled=F("quantity"), status=LineStatus.CANCELLED)
            order_services.order_status_refresh(order=order.pk, actor=actor, reason="Buyer cancelled")
            return
        order_services.order_transition(order=order.pk, to_status=OrderStatus.OPEN, actor=actor, reason="Paid")
        if status == OrderStatus.OPEN:
            return
        if status == OrderStatus.BACKORDERED:
            OrderLine.objects.filter(order=order).update(status=LineStatus.BACKORDERED)
            order_services.order_transition(
                order=order.pk, to_status=status, actor="router", reason="No node has stock for every line"
            )
            return
        if status in (OrderStatus.ALLOCATED, OrderStatus.RELEASED):
            if not self._reserve(order, locations):
                OrderLine.objects.filter(order=order).update(status=LineStatus.BACKORDERED)
                order_services.order_transition(
                    order=order.pk,
                    to_status=OrderStatus.BACKORDERED,
                    actor="router",
                    reason="No node has stock for every line",
                )
                return
            order_services.order_transition(
                order=order.pk, to_status=OrderStatus.ALLOCATED, actor="router", reason="Routed to one node"
            )
            if status == OrderStatus.RELEASED:
                order_services.order_transition(
                    order=order.pk, to_status=status, actor="router", reason="Released to the node"
                )
            return
        # Shipped before the opening stock count: the quantities change, the ledger does not.
        lines = list(OrderLine.objects.filter(order=order))
        for i, line in enumerate(lines):
            partial = status == OrderStatus.PARTIALLY_SHIPPED and i == 0 and (len(lines) > 1 or line.quantity > 1)
            line.quantity_shipped = (
                line.quantity - 1 if partial and len(lines) == 1 else (0 if partial else line.quantity)
            )
            line.status = LineStatus.SHIPPED if line.quantity_shipped == line.quantity else LineStatus.ALLOCATED
        OrderLine.objects.bulk_update(lines, ["quantity_shipped", "status"])
        order_services.order_status_refresh(order=order.pk, actor="wms:demo", reason="Shipped")
        if status == OrderStatus.DELIVERED:
            order_services.order_transition(order=order.pk, to_status=status, actor="tms:demo", reason="Delivered")

    def _reserve(self, order, locations) -> bool:
        """Reserve every line at the first node with enough available stock (demo only, not the router)."""
        lines = list(OrderLine.objects.filter(order=order))
        for loc in locations[:2] + locations[3:]:
            levels = {
                lvl.sku_id: lvl
                for lvl in StockLevel.objects.select_for_update()
                .filter(location=loc, sku_id__in=[line.sku_id for line in lines])
                .order_by("pk")
            }
            if all(line.sku_id in levels and levels[line.sku_id].atp >= line.quantity for line in lines):
                for line in lines:
                    StockLevel.objects.filter(pk=levels[line.sku_id].pk).update(reserved=F("reserved") + line.quantity)
                    Reservation.objects.create(
                        order_line=line, sku_id=line.sku_id, location=loc, quantity=line.quantity
                    )
                OrderLine.objects.filter(order=order).update(status=LineStatus.ALLOCATED)
                return True
        return False
