"""factory_boy factories for every app's core models."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from channels.models import ChannelAccount, ChannelKind, Listing
from inventory.models import Location, LocationKind, Sku, StockLevel
from orders.models import LineStatus, Order, OrderLine, OrderStatus, ShipToAddress


class LocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Location

    code = factory.Sequence(lambda n: f"NODE{n}")
    name = factory.Sequence(lambda n: f"Node {n}")
    kind = LocationKind.WAREHOUSE
    country_code = "US"
    postal_code = "75261"
    timezone = "America/Chicago"


class SkuFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sku

    code = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Sequence(lambda n: f"Product {n}")


class StockLevelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StockLevel

    sku = factory.SubFactory(SkuFactory)
    location = factory.SubFactory(LocationFactory)
    on_hand = 10
    reserved = 0


class ChannelAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChannelAccount
        django_get_or_create = ("name",)

    kind = ChannelKind.AMAZON
    name = factory.Sequence(lambda n: f"account-{n}")
    api_base_url = "http://127.0.0.1:9"


class ListingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Listing

    account = factory.SubFactory(ChannelAccountFactory)
    sku = factory.SubFactory(SkuFactory)
    channel_sku = factory.SelfAttribute("sku.code")


class ShipToAddressFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ShipToAddress

    name = "Zoë Ōtani"
    line1 = "1 Market St"
    city = "San Francisco"
    region = "CA"
    postal_code = "94105"
    country_code = "US"


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    account = factory.SubFactory(ChannelAccountFactory)
    external_id = factory.Sequence(lambda n: f"111-{n:07d}-0000001")
    status = OrderStatus.OPEN
    placed_at = factory.LazyFunction(lambda: timezone.now() - timedelta(hours=2))
    ship_by = factory.LazyFunction(lambda: timezone.now() + timedelta(days=1))
    currency = "USD"
    total_amount = Decimal("25.00")
    ship_to = factory.SubFactory(ShipToAddressFactory)
    customer_name = factory.SelfAttribute("ship_to.name")


class OrderLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    external_id = factory.Sequence(lambda n: f"line-{n}")
    sku = factory.SubFactory(SkuFactory)
    channel_sku = factory.SelfAttribute("sku.code")
    quantity = 1
    unit_price = Decimal("25.00")
    currency = "USD"
    status = LineStatus.OPEN


# --- inventory (issue #3) ---------------------------------------------------------------------------


class InboundShipmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "inventory.InboundShipment"

    reference = factory.Sequence(lambda n: f"PO-{n:05d}")
    supplier = "Acme Supply"
    location = factory.SubFactory(LocationFactory)
    expected_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))


class InboundLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "inventory.InboundLine"

    shipment = factory.SubFactory(InboundShipmentFactory)
    sku = factory.SubFactory(SkuFactory)
    quantity_expected = 10
