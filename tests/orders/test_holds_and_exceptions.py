from __future__ import annotations

import pytest

from orders import services
from orders.errors import HoldError
from orders.models import CaseStatus, ExceptionCase, Hold, HoldKind, OrderEvent, OrderStatus
from orders.services import ExceptionCaseError
from tests.factories import OrderFactory, SkuFactory


@pytest.mark.django_db
def test_place_hold_sets_on_hold_and_writes_event_with_before_after(agent):
    # given
    order = OrderFactory()
    # when
    hold = services.hold_place(order=order, kind=HoldKind.FRAUD, reason="Velocity check", actor=agent)
    # then
    order.refresh_from_db()
    assert order.on_hold
    assert hold.is_active and hold.placed_by == "agent"
    event = OrderEvent.objects.get(order=order, kind="hold_placed")
    assert event.actor_user == agent
    assert event.data["before"] == {"on_hold": False} and event.data["after"] == {"on_hold": True}


@pytest.mark.django_db
def test_placing_the_same_hold_twice_returns_the_active_one():
    order = OrderFactory()
    first = services.hold_place(order=order, kind=HoldKind.PAYMENT, reason="Pending capture", actor="sync:shopify")
    again = services.hold_place(order=order, kind=HoldKind.PAYMENT, reason="Pending capture", actor="sync:shopify")
    assert first.pk == again.pk
    assert Hold.objects.count() == 1
    assert OrderEvent.objects.filter(kind="hold_placed").count() == 1


@pytest.mark.django_db
def test_release_clears_on_hold_only_when_no_hold_remains():
    order = OrderFactory()
    fraud = services.hold_place(order=order, kind=HoldKind.FRAUD, reason="Review", actor="ops")
    address = services.hold_place(order=order, kind=HoldKind.ADDRESS, reason="PO box", actor="ops")
    services.hold_release(hold=fraud, reason="Cleared", actor="ops")
    order.refresh_from_db()
    assert order.on_hold
    services.hold_release(hold=address, reason="Fixed", actor="ops")
    order.refresh_from_db()
    assert not order.on_hold


@pytest.mark.django_db
def test_releasing_a_hold_twice_is_an_error_and_changes_nothing():
    # given
    order = OrderFactory()
    hold = services.hold_place(order=order, kind=HoldKind.MANUAL, reason="Check", actor="ops")
    services.hold_release(hold=hold, reason="Done", actor="ops")
    events = OrderEvent.objects.count()
    # when
    with pytest.raises(HoldError, match="already released by ops"):
        services.hold_release(hold=hold, reason="Again", actor="someone-else")
    # then
    hold.refresh_from_db()
    assert hold.released_by == "ops" and hold.release_reason == "Done"
    assert OrderEvent.objects.count() == events


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "reason", "message"), [("vibes", "x", "unknown hold kind"), ("manual", " ", "reason")]
)
def test_bad_hold_input_is_refused(kind, reason, message):
    order = OrderFactory()
    with pytest.raises(HoldError, match=message):
        services.hold_place(order=order, kind=kind, reason=reason, actor="ops")
    assert not Hold.objects.exists()


@pytest.mark.django_db
def test_terminal_orders_cannot_be_held():
    order = OrderFactory(status=OrderStatus.CANCELLED)
    with pytest.raises(HoldError, match="cancelled"):
        services.hold_place(order=order, kind=HoldKind.MANUAL, reason="x", actor="ops")


@pytest.mark.django_db
def test_opening_an_already_open_case_returns_the_existing_one():
    # given
    order, sku = OrderFactory(), SkuFactory()
    first, created = services.exception_case_open(
        kind="unmapped_sku", title="SKU X unknown", order_id=order.pk, sku_id=sku.pk, actor="sync:amazon-us"
    )
    # when
    again, created_again = services.exception_case_open(
        kind="unmapped_sku", title="SKU X unknown (again)", order_id=order.pk, sku_id=sku.pk, actor="sync:amazon-us"
    )
    # then
    assert created and not created_again
    assert first.pk == again.pk
    assert ExceptionCase.objects.count() == 1
    assert OrderEvent.objects.filter(kind="exception_opened").count() == 1


@pytest.mark.django_db
def test_a_resolved_case_does_not_block_a_new_one(agent):
    order = OrderFactory()
    case, _ = services.exception_case_open(kind="no_node", title="No node", order_id=order.pk, actor="router")
    services.exception_case_assign(case=case, owner=agent, actor=agent)
    services.exception_case_acknowledge(case=case, actor=agent)
    resolved = services.exception_case_resolve(case=case, note="Stock transferred", actor=agent)
    assert resolved.status == CaseStatus.RESOLVED and resolved.resolved_by == "agent" and resolved.owner == agent
    new, created = services.exception_case_open(kind="no_node", title="No node", order_id=order.pk, actor="router")
    assert created and new.pk != case.pk


@pytest.mark.django_db
def test_resolving_needs_a_note_and_happens_once(agent):
    case, _ = services.exception_case_open(kind="other", title="Look at this", actor="ops")
    with pytest.raises(ExceptionCaseError, match="note"):
        services.exception_case_resolve(case=case, note="", actor=agent)
    services.exception_case_resolve(case=case, note="Looked", actor=agent)
    with pytest.raises(ExceptionCaseError, match="already resolved"):
        services.exception_case_resolve(case=case, note="Again", actor=agent)
