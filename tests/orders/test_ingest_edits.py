"""Changes the channel makes after the first ingest: applied to an order until it ships, with one event
showing before and after; an order without a usable ship-to waits, held; buyer cancel requests hold the
order at once. Service level: IngestOrder values straight into orders_ingest_batch."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.kernel.errors import DomainError
from orders import services
from orders.models import (
    CancelInitiator,
    CaseStatus,
    ExceptionCase,
    ExceptionKind,
    Hold,
    HoldKind,
    LineStatus,
    Order,
    OrderEvent,
    OrderStatus,
    ShipToAddress,
)
from orders.services import IngestAddress, IngestError, IngestLine, IngestOrder, SkuRef, orders_ingest_batch
from orders.services.ingest import NO_SHIP_TO, ship_to_usable
from orders.signals import order_lines_cancelled
from tests.factories import ChannelAccountFactory, SkuFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ACTOR = "sync:test-account"

HOME = IngestAddress(
    name="Zoë Ōtani",
    line1="1 Market St",
    city="San Francisco",
    region="CA",
    postal_code="94105",
    country_code="US",
    phone="+1 555 0100",
)
NEW_HOME = replace(HOME, line1="500 Howard St", line2="Floor 3", postal_code="94107")


def order(external_id="A-1", *, at=T0, status=OrderStatus.OPEN, lines=None, **fields) -> IngestOrder:
    lines = lines or [
        IngestLine(external_id="L1", channel_sku="SKU-A", quantity=2, unit_price=Decimal("10.00")),
        IngestLine(external_id="L2", channel_sku="SKU-B", quantity=1, unit_price=Decimal("5.00")),
    ]
    fields.setdefault("ship_to", HOME)
    fields.setdefault("ship_by", T0 + timedelta(days=2))
    return IngestOrder(
        external_id=external_id,
        status=status,
        channel_status=status.upper(),
        placed_at=T0 - timedelta(hours=1),
        source_updated_at=at,
        currency="USD",
        lines=lines,
        **fields,
    )


@pytest.fixture
def account():
    return ChannelAccountFactory(name="test-account")


@pytest.fixture
def sku_map():
    return {"SKU-A": SkuRef(SkuFactory(code="SKU-A").pk), "SKU-B": SkuRef(SkuFactory(code="SKU-B").pk)}


def ingest(account, sku_map, *orders):
    return orders_ingest_batch(account_id=account.pk, orders=list(orders), sku_map=sku_map, actor=ACTOR)


def test_edits_before_shipping_reach_the_order_with_one_event_of_the_changed_fields(account, sku_map):
    # given an open order as first seen
    (created,) = ingest(account, sku_map, order(marketplace_id="ATVPDKIKX0DER"))
    # when the buyer changes the address and the channel the dates, the service level, a price and the total
    later = T0 + timedelta(hours=1)
    changed_lines = [
        IngestLine(external_id="L1", channel_sku="SKU-A", quantity=2, unit_price=Decimal("9.50")),
        IngestLine(
            external_id="L2",
            channel_sku="SKU-B",
            quantity=1,
            unit_price=Decimal("5.00"),
            ship_by=T0 + timedelta(days=1),
            deliver_by=T0 + timedelta(days=4),
        ),
    ]
    (updated,) = ingest(
        account,
        sku_map,
        order(
            at=later,
            lines=changed_lines,
            ship_to=replace(NEW_HOME, email="zoe@example.com"),
            ship_by=T0 + timedelta(days=1),
            deliver_by=T0 + timedelta(days=4),
            shipping_method="Expedited",
            total_amount=Decimal("24.00"),
            marketplace_id="A1AM78C64UM0Y8",
        ),
    )
    # then the order, its lines and its address say what the channel says now
    row = Order.objects.select_related("ship_to").get(pk=created.order_id)
    assert updated.outcome == "updated" and updated.edited
    assert (row.ship_to.line1, row.ship_to.line2, row.ship_to.postal_code) == ("500 Howard St", "Floor 3", "94107")
    assert row.ship_to.email == "zoe@example.com" and row.ship_to.phone == HOME.phone
    assert (row.ship_by, row.deliver_by) == (T0 + timedelta(days=1), T0 + timedelta(days=4))
    assert row.shipping_method == "Expedited" and row.total_amount == Decimal("24.00")
    assert row.channel_marketplace_id == "A1AM78C64UM0Y8"
    lines = {line.external_id: line for line in row.lines.all()}
    assert lines["L1"].unit_price == Decimal("9.50")
    assert (lines["L2"].ship_by, lines["L2"].deliver_by) == (T0 + timedelta(days=1), T0 + timedelta(days=4))
    # and one event says what changed, before and after, and nothing of the address that did not change
    (event,) = OrderEvent.objects.filter(order=row, kind="channel_edited")
    assert event.actor == ACTOR
    assert event.data["before"]["ship_to"] == {"line1": "1 Market St", "line2": "", "postal_code": "94105", "email": ""}
    assert event.data["after"]["ship_to"] == {
        "line1": "500 Howard St",
        "line2": "Floor 3",
        "postal_code": "94107",
        "email": "zoe@example.com",
    }
    assert "name" not in event.data["after"]["ship_to"] and "city" not in event.data["before"]["ship_to"]
    # (the order's new ship-by and deliver-by reach the lines that have none of their own)
    assert event.data["before"]["lines"]["L1"] == {
        "unit_price": "10.00",
        "ship_by": (T0 + timedelta(days=2)).isoformat(),
        "deliver_by": None,
    }
    assert event.data["after"]["lines"]["L1"]["unit_price"] == "9.50"
    assert event.data["after"]["lines"]["L2"] == {
        "ship_by": (T0 + timedelta(days=1)).isoformat(),
        "deliver_by": (T0 + timedelta(days=4)).isoformat(),
    }
    assert event.data["before"]["total_amount"] == "25.00" and event.data["after"]["total_amount"] == "24.00"
    assert event.data["before"]["channel_marketplace_id"] == "ATVPDKIKX0DER"
    assert event.data["after"]["shipping_method"] == "Expedited"


def test_the_same_content_again_writes_nothing(account, sku_map):
    ingest(account, sku_map, order())
    ingest(account, sku_map, order(at=T0 + timedelta(hours=1), ship_to=NEW_HOME))
    events = OrderEvent.objects.count()
    # when the channel sends the same order again, newer but unchanged
    ingest(account, sku_map, order(at=T0 + timedelta(hours=2), ship_to=NEW_HOME))
    # then no new edit, no new address row
    assert OrderEvent.objects.count() == events
    assert ShipToAddress.objects.count() == 1


def test_an_older_payload_changes_nothing(account, sku_map):
    ingest(account, sku_map, order(at=T0 + timedelta(hours=1), ship_to=NEW_HOME))
    ingest(account, sku_map, order(at=T0, ship_to=HOME))
    assert Order.objects.get().ship_to.line1 == NEW_HOME.line1
    assert not OrderEvent.objects.filter(kind="channel_edited").exists()


def test_a_payload_without_the_address_keeps_the_one_the_order_has(account, sku_map):
    ingest(account, sku_map, order())
    ingest(account, sku_map, order(at=T0 + timedelta(hours=1), ship_to=None))
    ingest(account, sku_map, order(at=T0 + timedelta(hours=2), ship_to=IngestAddress(name="Zoë Ōtani")))
    assert Order.objects.get().ship_to.line1 == HOME.line1
    assert not Hold.objects.exists()


def test_edits_after_the_order_shipped_are_not_applied(account, sku_map):
    ingest(account, sku_map, order())
    Order.objects.update(status=OrderStatus.SHIPPED)
    ingest(account, sku_map, order(at=T0 + timedelta(hours=1), ship_to=NEW_HOME, total_amount=Decimal("1.00")))
    row = Order.objects.get()
    assert row.ship_to.line1 == HOME.line1 and row.total_amount == Decimal("25.00")
    assert not OrderEvent.objects.filter(kind="channel_edited").exists()


def test_an_order_first_seen_pending_without_address_waits_then_gets_its_address(account, sku_map):
    # given an order first seen pending with no address (Amazon PENDING): it waits, not held
    (first,) = ingest(account, sku_map, order(status=OrderStatus.PENDING, ship_to=None, ship_by=None))
    row = Order.objects.get(pk=first.order_id)
    assert row.status == OrderStatus.PENDING and row.ship_to is None and not row.on_hold
    # when it is paid and the address comes with it
    ingest(account, sku_map, order(at=T0 + timedelta(hours=1)))
    # then the order has the address and the ship-by, is open and not held
    row.refresh_from_db()
    assert row.status == OrderStatus.OPEN and not row.on_hold
    assert row.ship_to.line1 == HOME.line1 and row.customer_name == HOME.name
    assert row.ship_by == T0 + timedelta(days=2)
    event = OrderEvent.objects.get(order=row, kind="channel_edited")
    assert event.data["before"]["ship_to"]["line1"] == "" and event.data["after"]["ship_to"]["line1"] == HOME.line1
    assert event.data["before"]["ship_by"] is None


def test_an_open_order_without_a_usable_address_is_held_with_a_case_until_one_arrives(account, sku_map):
    # given an open order whose ship-to has no postal code
    (first,) = ingest(account, sku_map, order(ship_to=replace(HOME, postal_code="")))
    row = Order.objects.get(pk=first.order_id)
    hold = Hold.objects.get(order=row, kind=HoldKind.ADDRESS)
    assert row.on_hold and hold.reason == NO_SHIP_TO
    case = ExceptionCase.objects.get(order=row, kind=ExceptionKind.ADDRESS)
    assert "no ship-to address yet" in case.title and case.status == CaseStatus.OPEN
    # when the same unusable address comes again: still one hold, one case
    ingest(account, sku_map, order(at=T0 + timedelta(minutes=5), ship_to=replace(HOME, postal_code="")))
    assert Hold.objects.filter(order=row).count() == 1 and ExceptionCase.objects.filter(order=row).count() == 1
    # when a usable address arrives
    ingest(account, sku_map, order(at=T0 + timedelta(hours=1)))
    # then the hold is released and the case resolved, by the sync, with events
    row.refresh_from_db()
    hold.refresh_from_db()
    case.refresh_from_db()
    assert not row.on_hold and hold.released_at is not None and hold.released_by == ACTOR
    assert case.status == CaseStatus.RESOLVED
    assert OrderEvent.objects.filter(order=row, kind="hold_released", data__hold_kind=HoldKind.ADDRESS).count() == 1


def test_a_persons_address_hold_is_not_released_by_a_payload(account, sku_map):
    (first,) = ingest(account, sku_map, order())
    services.hold_place(order=first.order_id, kind=HoldKind.ADDRESS, reason="Buyer called: wrong unit", actor="agent")
    ingest(account, sku_map, order(at=T0 + timedelta(hours=1), ship_to=NEW_HOME))
    assert Hold.objects.get(order_id=first.order_id).released_at is None


def test_pickup_and_marketplace_fulfilled_orders_need_no_ship_to(account, sku_map):
    ingest(account, sku_map, order("P-1", ship_to=None, service_level="pickup", pickup_location_ref="store-9"))
    ingest(account, sku_map, order("M-1", ship_to=None, marketplace_fulfilled=True))
    assert not Hold.objects.exists()


@pytest.mark.parametrize(
    ("address", "usable"),
    [
        (HOME, True),
        (replace(HOME, line1=""), False),
        (replace(HOME, city=" "), False),
        (replace(HOME, country_code=""), False),
        (replace(HOME, postal_code=""), False),
        (replace(HOME, country_code="HK", postal_code=""), True),
        (replace(HOME, country_code="AE", postal_code=""), True),
        (replace(HOME, country_code="IE", postal_code="D02 X285"), True),
    ],
)
def test_the_one_rule_of_a_usable_ship_to(address, usable):
    assert (
        ship_to_usable(
            line1=address.line1, city=address.city, country_code=address.country_code, postal_code=address.postal_code
        )
        is usable
    )


def test_a_line_whose_sku_arrives_later_is_mapped_and_its_hold_released(account, sku_map):
    # given an order whose second line came with no SKU, held for it (as the channels ingest does)
    nosku = [
        IngestLine(external_id="L1", channel_sku="SKU-A", quantity=2, unit_price=Decimal("10.00")),
        IngestLine(external_id="L2", channel_sku="NOSKU:L2", quantity=1, unit_price=Decimal("5.00")),
    ]
    (first,) = ingest(account, sku_map, order(lines=nosku))
    assert first.unmapped_skus == ["NOSKU:L2"]
    hold = services.hold_place(order=first.order_id, kind=HoldKind.UNMAPPED_SKU, reason="SKU not mapped", actor=ACTOR)
    services.exception_case_open(
        kind=ExceptionKind.UNMAPPED_SKU, title="unmapped", order_id=first.order_id, account_id=account.pk, actor=ACTOR
    )
    # when the channel now sends the line's SKU
    (second,) = ingest(account, sku_map, order(at=T0 + timedelta(hours=1)))
    # then the line takes it and its mapping, the hold is released and the case resolved
    line = Order.objects.get(pk=first.order_id).lines.get(external_id="L2")
    assert (line.channel_sku, line.sku_id) == ("SKU-B", sku_map["SKU-B"].sku_id)
    assert second.unmapped_skus == []
    hold.refresh_from_db()
    assert hold.released_at is not None
    assert ExceptionCase.objects.get(kind=ExceptionKind.UNMAPPED_SKU).status == CaseStatus.RESOLVED
    event = OrderEvent.objects.get(order_id=first.order_id, kind="channel_edited")
    assert event.data["before"]["lines"]["L2"] == {"channel_sku": "NOSKU:L2", "sku_id": None}
    assert event.data["after"]["lines"]["L2"] == {"channel_sku": "SKU-B", "sku_id": sku_map["SKU-B"].sku_id}


def test_a_mapping_made_later_maps_the_line_when_the_order_is_ingested_again(account, sku_map):
    unknown = [IngestLine(external_id="L1", channel_sku="SKU-NEW", quantity=1, unit_price=Decimal("25.00"))]
    (first,) = ingest(account, sku_map, order(lines=unknown))
    services.hold_place(order=first.order_id, kind=HoldKind.UNMAPPED_SKU, reason="SKU not mapped", actor=ACTOR)
    # when ops map SKU-NEW and the order comes again
    mapped = {**sku_map, "SKU-NEW": SkuRef(SkuFactory(code="WB-NEW").pk, allow_backorder=True)}
    ingest(account, mapped, order(at=T0 + timedelta(hours=1), lines=unknown))
    line = Order.objects.get(pk=first.order_id).lines.get()
    assert line.sku_id == mapped["SKU-NEW"].sku_id and line.is_backorder_allowed
    assert not Order.objects.get(pk=first.order_id).on_hold


def test_a_sku_change_on_a_routed_line_is_not_applied_but_recorded(account, sku_map):
    (first,) = ingest(account, sku_map, order())
    Order.objects.filter(pk=first.order_id).update(status=OrderStatus.RELEASED)
    Order.objects.get(pk=first.order_id).lines.update(status=LineStatus.ALLOCATED)
    changed = [
        IngestLine(external_id="L1", channel_sku="SKU-B", quantity=2, unit_price=Decimal("10.00")),
        IngestLine(external_id="L2", channel_sku="SKU-B", quantity=1, unit_price=Decimal("5.00")),
    ]
    ingest(account, sku_map, order(at=T0 + timedelta(hours=1), lines=changed))
    assert Order.objects.get(pk=first.order_id).lines.get(external_id="L1").channel_sku == "SKU-A"
    event = OrderEvent.objects.get(order_id=first.order_id, kind="channel_edited")
    assert event.data["not_applied"] == ["line L1: channel SKU SKU-A → SKU-B"]


def test_who_cancelled_is_recorded_with_the_cancelled_units(account, sku_map):
    (first,) = ingest(account, sku_map, order())
    cancelled = [
        IngestLine(
            external_id="L1", channel_sku="SKU-A", quantity=2, unit_price=Decimal("10.00"), quantity_cancelled=2
        ),
        IngestLine(external_id="L2", channel_sku="SKU-B", quantity=1, unit_price=Decimal("5.00"), quantity_cancelled=1),
    ]
    (second,) = ingest(
        account,
        sku_map,
        order(at=T0 + timedelta(hours=1), status=OrderStatus.CANCELLED, lines=cancelled, cancelled_by="marketplace"),
    )
    row = Order.objects.get(pk=first.order_id)
    assert row.status == OrderStatus.CANCELLED and row.cancel_initiator == CancelInitiator.MARKETPLACE
    assert sorted(second.cancelled_lines) == sorted((line.pk, line.quantity) for line in row.lines.all())
    # and an order first seen cancelled by the buyer
    ingest(account, sku_map, order("A-2", status=OrderStatus.CANCELLED, lines=cancelled, cancelled_by="buyer"))
    assert Order.objects.get(external_id="A-2").cancel_initiator == CancelInitiator.BUYER


def test_an_unknown_cancel_initiator_fails_the_order_naming_the_field(account, sku_map):
    (result,) = ingest(account, sku_map, order(cancelled_by="the cat"))
    assert result.outcome == "failed" and "cancelled_by" in result.error
    with pytest.raises(IngestError):
        orders_ingest_batch(account_id=account.pk, orders=[order()], sku_map=sku_map, actor=" ")


def test_a_buyer_cancel_request_holds_the_order_at_once_and_a_withdrawal_releases_it(account, sku_map):
    # given an open order; when the buyer asks the channel to cancel
    (first,) = ingest(account, sku_map, order())
    (asked,) = ingest(
        account,
        sku_map,
        order(at=T0 + timedelta(hours=1), cancel_requested=True, cancel_request_reason="Ordered twice"),
    )
    # then the order records it and is held, with an event
    row = Order.objects.get(pk=first.order_id)
    assert asked.cancel_requested and row.on_hold
    assert row.cancel_requested_at is not None and row.cancel_request_reason == "Ordered twice"
    hold = Hold.objects.get(order=row, kind=HoldKind.CANCEL_REQUEST)
    assert OrderEvent.objects.filter(order=row, kind="cancel_requested").count() == 1
    # when the same request is seen again: nothing twice
    (again,) = ingest(account, sku_map, order(at=T0 + timedelta(hours=2), cancel_requested=True))
    assert not again.cancel_requested
    assert OrderEvent.objects.filter(order=row, kind="cancel_requested").count() == 1
    assert Hold.objects.filter(order=row).count() == 1
    # when the channel no longer shows the request (the buyer withdrew it) while the order is still held
    case, _ = services.exception_case_open(
        kind=ExceptionKind.CANCEL_REQUEST, title="asks to cancel", order_id=row.pk, account_id=account.pk, actor=ACTOR
    )
    (withdrawn,) = ingest(account, sku_map, order(at=T0 + timedelta(hours=3)))
    # then the hold is released, the case resolved and the request cleared
    row.refresh_from_db()
    hold.refresh_from_db()
    case.refresh_from_db()
    assert withdrawn.cancel_request_withdrawn
    assert hold.released_at is not None and not row.on_hold and row.cancel_requested_at is None
    assert case.status == CaseStatus.RESOLVED
    assert OrderEvent.objects.filter(order=row, kind="cancel_request_withdrawn").count() == 1


def test_a_new_order_with_a_cancel_request_is_held_from_the_start(account, sku_map):
    (result,) = ingest(account, sku_map, order(cancel_requested=True, cancel_request_reason="Changed my mind"))
    row = Order.objects.get(pk=result.order_id)
    assert result.cancel_requested and row.on_hold and row.cancel_requested_at is not None
    assert Hold.objects.filter(order=row, kind=HoldKind.CANCEL_REQUEST, released_at__isnull=True).exists()


def test_a_page_of_edits_is_written_in_a_constant_number_of_statements(account, sku_map):
    def page(count, at):
        return [order(f"B-{n}", at=at, ship_to=NEW_HOME if at > T0 else HOME) for n in range(count)]

    counts = []
    for count in (3, 30):
        Order.objects.all().delete()
        ingest(account, sku_map, *[replace(o, external_id=f"{o.external_id}-{count}") for o in page(count, T0)])
        edits = [replace(o, external_id=f"{o.external_id}-{count}") for o in page(count, T0 + timedelta(hours=1))]
        with CaptureQueriesContext(connection) as queries:
            results = ingest(account, sku_map, *edits)
        assert all(r.outcome == "updated" and "ship_to" in r.edited for r in results)
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_order_lines_cancel_counts_units_moves_the_status_and_announces_them(account, sku_map):
    (first,) = ingest(account, sku_map, order())
    row = Order.objects.get(pk=first.order_id)
    lines = {line.external_id: line for line in row.lines.all()}
    heard = []

    def listen(sender, **kwargs):
        heard.append(kwargs)

    order_lines_cancelled.connect(listen)
    try:
        # refused: more units than are open, an unknown initiator; nothing changes
        with pytest.raises(DomainError):
            services.order_lines_cancel(
                order=row, quantities={lines["L1"].pk: 3}, reason="buyer", initiator="buyer", actor="agent"
            )
        with pytest.raises(DomainError):
            services.order_lines_cancel(
                order=row, quantities={lines["L1"].pk: 1}, reason="buyer", initiator="nobody", actor="agent"
            )
        event = services.order_lines_cancel(
            order=row,
            quantities={lines["L1"].pk: 2, lines["L2"].pk: 1},
            reason="buyer requested cancellation",
            initiator=CancelInitiator.BUYER,
            actor="agent",
        )
    finally:
        order_lines_cancelled.disconnect(listen)
    row.refresh_from_db()
    assert row.status == OrderStatus.CANCELLED and row.cancel_initiator == CancelInitiator.BUYER
    assert all(
        line.quantity_cancelled == line.quantity and line.status == LineStatus.CANCELLED for line in row.lines.all()
    )
    assert event.kind == "lines_cancelled" and event.actor == "agent" and event.data["initiator"] == "buyer"
    assert [h["event_id"] for h in heard] == [event.pk]
    assert sorted(heard[0]["lines"]) == sorted([(lines["L1"].pk, 2), (lines["L2"].pk, 1)])
