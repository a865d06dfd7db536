"""An oversell reported by a channel opens a case at once: an order sold against the 0 the channel had accepted
from us (found by the sync or webhook drain that brings the order), or a negative quantity the channel shows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels.inbound import oversells_report
from channels.models import ChannelAvailability
from orders.models import CaseStatus, ExceptionCase, ExceptionKind
from tests.factories import ChannelAccountFactory, OrderFactory, OrderLineFactory, SkuFactory

pytestmark = pytest.mark.django_db


def test_an_order_sold_against_an_acknowledged_zero_opens_one_oversell_case_per_order_and_sku():
    # given a channel that acknowledged 0 for the tee an hour ago, 5 for the mug, and 0 for the cap only after
    now = timezone.now()
    account = ChannelAccountFactory(name="walmart-us", kind="walmart")
    tee, mug, cap = SkuFactory(code="TEE-1"), SkuFactory(code="MUG-1"), SkuFactory(code="CAP-1")
    for sku, pushed, at in ((tee, 0, now - timedelta(hours=1)), (mug, 5, now - timedelta(hours=1)), (cap, 0, now)):
        ChannelAvailability.objects.create(
            account=account, sku=sku, quantity=pushed, last_pushed_quantity=pushed, last_pushed_at=at
        )
    order = OrderFactory(account=account, placed_at=now - timedelta(minutes=5))
    for sku in (tee, mug, cap):
        OrderLineFactory(order=order, sku=sku, quantity=2)
    other = OrderFactory(account=ChannelAccountFactory(), placed_at=now)  # another account's order
    OrderLineFactory(order=other, sku=tee, quantity=1)
    # when the ingest reports the new orders
    cases = oversells_report(account, order_ids=[order.pk, other.pk], actor="sync:walmart-us")
    # then only the tee, sold after the channel had accepted 0, is an oversell
    case = ExceptionCase.objects.get(pk__in=cases)
    assert (case.kind, case.order_id, case.sku_id, case.account_id, case.status) == (
        ExceptionKind.OVERSELL,
        order.pk,
        tee.pk,
        account.pk,
        CaseStatus.OPEN,
    )
    assert "TEE-1" in case.title and "sold 2" in case.detail
    # and a replay (the same page again) refreshes that case instead of opening another
    assert oversells_report(account, order_ids=[order.pk], actor="sync:walmart-us") == [case.pk]
    assert ExceptionCase.objects.filter(kind=ExceptionKind.OVERSELL).count() == 1


def test_no_new_orders_no_query_and_no_case():
    assert oversells_report(ChannelAccountFactory(), order_ids=[], actor="sync") == []
    assert not ExceptionCase.objects.exists()
