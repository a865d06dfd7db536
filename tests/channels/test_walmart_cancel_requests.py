"""Walmart buyer cancellation requests (intentToCancel) over HTTP against the sandbox: read, never shipped,
cancelled at the customer's request; who cancelled."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from channels.connectors.base import CancelRequest, ChannelError, ShipmentConfirmation, ShipmentLine
from channels.models import OutboxMessage, OutboxStatus
from channels.outbox import cancellation_enqueue, outbox_relay, ship_confirmation_enqueue
from channels.services import connector_for
from channels.sync import sync_account_run
from orders.models import Order

pytestmark = pytest.mark.django_db


def _order(sandbox, lines=2):
    (made,) = sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False, lines=lines)
    return made


def _intent(sandbox, order_id: str, lines: list[str] | None = None) -> None:
    body = {"purchaseOrderId": order_id, **({"lines": lines} if lines else {})}
    assert httpx.post(f"{sandbox.base_url}/_sandbox/walmart/intent_to_cancel", json=body).status_code == 200


def _parsed(account, order_id: str):
    (page,) = [p for p in connector_for(account).fetch_orders(since=timezone.now() - timedelta(days=1))]
    (raw,) = [r for r in page.raw_orders if r["purchaseOrderId"] == order_id]
    return raw, connector_for(account).parse_order(raw)


def test_intent_to_cancel_is_a_cancel_request(walmart_sandbox, walmart_account):
    # given: the customer asked Walmart to cancel line 2
    made = _order(walmart_sandbox)
    _intent(walmart_sandbox, made.order_id, ["2"])
    # when
    raw, order = _parsed(walmart_account, made.order_id)
    # then
    assert [line.get("intentToCancel") for line in raw["orderLines"]["orderLine"]] == [None, "Y"]
    assert order.cancel_requested and "2" in order.cancel_request_reason
    assert order.to_ingest().cancel_requested


def test_a_line_the_customer_asked_to_cancel_is_never_shipped(walmart_sandbox, walmart_account, skus):
    # given: an ingested order, then the customer's request
    made = _order(walmart_sandbox)
    sync_account_run(account_id=walmart_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    _intent(walmart_sandbox, made.order_id)
    message = ship_confirmation_enqueue(
        order=order,
        package_reference="1",
        carrier_code="UPS",
        tracking_number="1Z1",
        shipped_at=timezone.now(),
        lines=[(line.external_id, line.quantity) for line in order.lines.all()],
    )
    # when
    outbox_relay(account_id=walmart_account.pk)
    # then: Walmart refused it, the message is parked with Walmart's words, nothing shipped
    message.refresh_from_db()
    assert message.status == OutboxStatus.PARKED
    assert "intentToCancelOverride" in message.last_error
    assert walmart_sandbox.state.shipments == []
    # and the error carries Walmart's whole answer
    with pytest.raises(ChannelError) as refused:
        connector_for(walmart_account).confirm_shipment(
            ShipmentConfirmation(made.order_id, "1", "UPS", "1Z1", timezone.now(), [ShipmentLine("1", 1)]), state={}
        )
    assert not refused.value.retryable
    assert refused.value.detail["errors"][0]["code"] == "INVALID_REQUEST_CONTENT.GMP_ORDER_API"


def test_cancelling_a_requested_line_uses_the_customer_reason_and_stops_the_order_shipping(
    walmart_sandbox, walmart_account, skus
):
    # given: the customer asked to cancel line 1 of 2; Waybill cancels it (whatever its own reason)
    made = _order(walmart_sandbox)
    _intent(walmart_sandbox, made.order_id, ["1"])
    sync_account_run(account_id=walmart_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    message = cancellation_enqueue(
        order=order, lines=[("1", made.lines[0].quantity)], reason="NoInventory", dedupe_key="1"
    )
    # when
    outbox_relay(account_id=walmart_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    assert walmart_sandbox.state.cancellations[-1]["reason"] == "CUSTOMER_REQUESTED_SELLER_TO_CANCEL"
    _raw, parsed = _parsed(walmart_account, made.order_id)
    assert parsed.cancelled_by == "buyer" and not parsed.cancel_requested
    # and the order's other line cannot ship any more: Walmart refuses it
    connector = connector_for(walmart_account)
    with pytest.raises(ChannelError, match="cancelled at the customer's request"):
        connector.confirm_shipment(
            ShipmentConfirmation(made.order_id, "1", "UPS", "1Z2", timezone.now(), [ShipmentLine("2", 1)]), state={}
        )


def test_the_customer_reason_without_a_request_is_refused(walmart_sandbox, walmart_account):
    # given: no intentToCancel on the order
    made = _order(walmart_sandbox)
    connector = connector_for(walmart_account)
    # when: the connector is asked to cancel as the buyer asked
    with pytest.raises(ChannelError, match="only for lines the customer asked"):
        connector.cancel_lines(CancelRequest(made.order_id, [], reason="BuyerCanceled"), state={})
    # and the sandbox itself refuses the reason, as the model says
    body = {
        "orderCancellation": {
            "orderLines": {
                "orderLine": [
                    {
                        "lineNumber": "1",
                        "orderLineStatuses": {
                            "orderLineStatus": [
                                {
                                    "status": "Cancelled",
                                    "cancellationReason": "CUSTOMER_REQUESTED_SELLER_TO_CANCEL",
                                    "statusQuantity": {"unitOfMeasurement": "EACH", "amount": "1"},
                                }
                            ]
                        },
                    }
                ]
            }
        }
    }
    response = connector.call("POST", f"/v3/orders/{made.order_id}/cancel", json=body)
    # then
    assert response.status_code == 400 and "intentToCancel" in response.json()["errors"][0]["description"]
    assert walmart_sandbox.state.cancellations == []


def test_a_seller_cancel_is_charged_to_the_seller(walmart_sandbox, walmart_account):
    # given
    made = _order(walmart_sandbox, lines=1)
    connector = connector_for(walmart_account)
    # when
    connector.cancel_lines(CancelRequest(made.order_id, [], reason="NoInventory"), state={})
    # then
    _raw, parsed = _parsed(walmart_account, made.order_id)
    assert parsed.status == "cancelled" and parsed.cancelled_by == "seller"
    assert OutboxMessage.objects.count() == 0
