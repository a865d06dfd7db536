from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.kernel.errors import DomainError
from orders import services
from orders.models import Order, OrderEvent, OrderLine, OrderStatus, ShipToAddress
from orders.services import AddressInput, DuplicateOrder, LineInput
from tests.factories import ChannelAccountFactory, OrderFactory, SkuFactory


def _create(account, external_id="113-0000001-0000001", **overrides):
    sku = SkuFactory()
    kwargs = dict(
        account_id=account.pk,
        external_id=external_id,
        placed_at=timezone.now(),
        currency="USD",
        lines=[
            LineInput(
                external_id="1",
                channel_sku=sku.code,
                sku_id=sku.pk,
                quantity=2,
                unit_price=Decimal("9.50"),
                ship_by=timezone.now() + timedelta(days=2),
            ),
            LineInput(
                external_id="2",
                channel_sku="UNMAPPED-1",
                quantity=1,
                unit_price=Decimal("3.00"),
                ship_by=timezone.now() + timedelta(days=1),
            ),
        ],
        actor="sync:amazon-us",
        ship_to=AddressInput(name="Łukasz Zieliński", city="Chicago", postal_code="60614", country_code="US"),
    )
    kwargs.update(overrides)
    return services.order_create(**kwargs)


@pytest.mark.django_db
def test_order_create_writes_order_lines_address_and_event():
    account = ChannelAccountFactory()
    order = _create(account)
    assert order.status == OrderStatus.PENDING
    assert order.total_amount == Decimal("22.00")
    assert order.lines.count() == 2
    assert order.ship_by == min(line.ship_by for line in order.lines.all())
    assert order.customer_name == "Łukasz Zieliński"
    assert OrderEvent.objects.get(order=order).kind == "created"


@pytest.mark.django_db
def test_duplicate_external_id_is_refused_and_nothing_is_half_written():
    # given
    account = ChannelAccountFactory()
    _create(account)
    counts = (
        Order.objects.count(),
        OrderLine.objects.count(),
        ShipToAddress.objects.count(),
        OrderEvent.objects.count(),
    )
    # when
    with pytest.raises(DuplicateOrder, match="113-0000001-0000001"):
        _create(account)
    # then
    assert counts == (
        Order.objects.count(),
        OrderLine.objects.count(),
        ShipToAddress.objects.count(),
        OrderEvent.objects.count(),
    )


@pytest.mark.django_db
def test_same_external_id_on_another_account_is_a_different_order():
    _create(ChannelAccountFactory(name="amazon-us"))
    _create(ChannelAccountFactory(name="amazon-ca"))
    assert Order.objects.count() == 2


@pytest.mark.django_db
def test_database_enforces_unique_account_external_id():
    order = OrderFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderFactory(account=order.account, external_id=order.external_id)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"lines": []}, "has no lines"),
        ({"lines": [LineInput(external_id="1", channel_sku="X", quantity=0)]}, "quantity must be positive"),
        ({"lines": [LineInput(external_id="1", channel_sku="X", quantity=-3)]}, "quantity must be positive"),
        ({"lines": [LineInput(external_id="1", channel_sku="X", quantity=1, unit_price=Decimal("-1"))]}, "negative"),
        ({"placed_at": datetime(2026, 1, 1)}, "timezone-aware"),  # noqa: DTZ001 (a naive time is the bad input)
        ({"status": "bogus"}, "unknown order status"),
        ({"external_id": ""}, "external id"),
        (
            {
                "lines": [
                    LineInput(external_id="1", channel_sku="X", quantity=1),
                    LineInput(external_id="1", channel_sku="Y", quantity=1),
                ]
            },
            "same line id",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_error_and_nothing_written(override, message):
    account = ChannelAccountFactory()
    with pytest.raises(DomainError, match=message):
        _create(account, **override)
    assert not Order.objects.exists()
    assert not ShipToAddress.objects.exists()


@pytest.mark.django_db
def test_line_quantity_invariants_are_enforced_by_the_database():
    order = _create(ChannelAccountFactory())
    line = order.lines.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderLine.objects.filter(pk=line.pk).update(quantity_shipped=2, quantity_cancelled=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderLine.objects.filter(pk=line.pk).update(quantity_shipped=1, quantity_returned=2)
