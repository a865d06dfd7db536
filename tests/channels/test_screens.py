"""Channel screens: health, an account's page, runs (live partial), failed events with re-process and discard,
outbox with retry and the channel's error answer; garbage gets a 4xx."""

from __future__ import annotations

import pytest
from django.urls import reverse

from channels.models import ChannelAccountEvent, InboundEvent, InboundStatus, OutboxMessage, OutboxStatus
from channels.sync import sync_account_run
from orders.models import ExceptionCase, ExceptionKind

pytestmark = pytest.mark.django_db


def test_screens_render_for_a_viewer(client, viewer, amazon_sandbox, amazon_account, skus):
    # given: a sync with one malformed order
    amazon_sandbox.state.faults.malformed_next = 1
    amazon_sandbox.state.generate(5)
    sync_account_run(account_id=amazon_account.pk)
    client.force_login(viewer)
    # when
    pages = {name: client.get(reverse(f"channels:{name}")) for name in ("accounts", "runs", "inbound", "outbox")}
    partial = client.get(reverse("channels:runs"), headers={"HX-Request": "true"})
    # then
    assert {name: r.status_code for name, r in pages.items()} == dict.fromkeys(pages, 200)
    assert "amazon-test" in pages["accounts"].text
    assert "Sync now" not in pages["accounts"].text  # a viewer cannot start syncs
    assert "<html" not in partial.text and "Partial" in partial.text
    assert "Re-process" not in pages["inbound"].text


def test_agent_reprocesses_a_failed_event_and_retries_the_outbox(client, agent, amazon_sandbox, amazon_account, skus):
    # given
    amazon_sandbox.state.faults.malformed_next = 1
    amazon_sandbox.state.generate(1)
    sync_account_run(account_id=amazon_account.pk)
    event = InboundEvent.objects.get(status=InboundStatus.FAILED)
    message = OutboxMessage.objects.create(
        account=amazon_account, kind="acknowledge", dedupe_key="ack:x", payload={}, status=OutboxStatus.PARKED
    )
    client.force_login(agent)
    # when
    reprocess = client.post(reverse("channels:inbound-reprocess", args=[event.pk]))
    retry = client.post(reverse("channels:outbox-retry", args=[message.pk]))
    # then
    assert reprocess.status_code == retry.status_code == 302
    event.refresh_from_db()
    message.refresh_from_db()
    assert event.attempts == 2 and event.status == InboundStatus.FAILED
    assert message.status == OutboxStatus.PENDING and "retry requested by agent" in message.last_error


def test_sync_now_needs_the_permission(client, viewer, manager, amazon_sandbox, amazon_account):
    # given
    url = reverse("channels:sync-now", args=[amazon_account.pk])
    client.force_login(viewer)
    # then
    assert client.post(url).status_code == 403
    client.force_login(manager)
    assert client.post(url).status_code == 302


def test_webhook_endpoint_needs_no_login_but_a_signature(client, amazon_account):
    # when: an anonymous post to a channel without webhooks
    response = client.post(f"/webhooks/amazon/{amazon_account.pk}/", b"{}", content_type="application/json")
    # then: not a redirect to the login page
    assert response.status_code == 404


def _parked_with_detail(account) -> OutboxMessage:
    return OutboxMessage.objects.create(
        account=account,
        kind="ship_confirmation",
        dedupe_key="ship:x:1",
        payload={"order_external_id": "x"},
        status=OutboxStatus.PARKED,
        attempts=8,
        last_error="confirmShipment x: HTTP 400: InvalidInput: packageReferenceId",
        last_error_detail={
            "status": 400,
            "errors": [{"code": "InvalidInput", "message": "<b>only numeric</b>", "details": "packageReferenceId"}],
        },
    )


def test_the_account_page_is_reachable_and_shows_what_needs_a_person(
    client, agent, amazon_sandbox, amazon_account, skus
):
    # given: a failed event, a parked message with the channel's answer, a listing-not-found case
    amazon_sandbox.state.faults.malformed_next = 1
    amazon_sandbox.state.generate(1)
    sync_account_run(account_id=amazon_account.pk)
    message = _parked_with_detail(amazon_account)
    ExceptionCase.objects.create(
        kind=ExceptionKind.LISTING_NOT_FOUND,
        title="listing not found at channel: amazon-test WB-NEW",
        account=amazon_account,
        dedupe_key="listing_not_found:listing=1",
    )
    client.force_login(agent)
    # when: from the accounts list to the account page, and to the message page
    accounts = client.get(reverse("channels:accounts"))
    url = reverse("channels:account", args=[amazon_account.pk])
    page = client.get(url)
    outbox = client.get(reverse("channels:outbox"))
    detail = client.get(reverse("channels:outbox-detail", args=[message.pk]))
    partial = client.get(reverse("channels:outbox-detail", args=[message.pk]), headers={"HX-Request": "true"})
    # then
    assert f'href="{url}"' in accounts.text
    assert page.status_code == 200
    assert ">Re-process</button>" in page.text and ">Discard</button>" in page.text
    assert "listing not found at channel: amazon-test WB-NEW" in page.text
    # the channel's answer, pretty-printed and escaped
    assert "&lt;b&gt;only numeric&lt;/b&gt;" in page.text and "<b>only numeric</b>" not in page.text
    assert reverse("channels:outbox-detail", args=[message.pk]) in outbox.text
    assert detail.status_code == 200 and '"code": "InvalidInput"'.replace('"', "&quot;") in detail.text
    assert "<html" not in partial.text and "packageReferenceId" in partial.text


def test_a_viewer_sees_the_account_page_without_buttons(client, viewer, amazon_sandbox, amazon_account, skus):
    # given
    amazon_sandbox.state.faults.malformed_next = 1
    amazon_sandbox.state.generate(1)
    sync_account_run(account_id=amazon_account.pk)
    event = InboundEvent.objects.get(status=InboundStatus.FAILED)
    client.force_login(viewer)
    # when
    page = client.get(reverse("channels:account", args=[amazon_account.pk]))
    discard = client.post(reverse("channels:inbound-discard", args=[event.pk]), {"reason": "no"})
    # then
    assert page.status_code == 200 and ">Discard</button>" not in page.text
    assert ">Re-process</button>" not in page.text
    assert discard.status_code == 403
    event.refresh_from_db()
    assert event.status == InboundStatus.FAILED


def test_garbage_gets_a_clear_4xx_and_changes_nothing(client, agent, amazon_sandbox, amazon_account, skus):
    # given
    amazon_sandbox.state.faults.malformed_next = 1
    amazon_sandbox.state.generate(2, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    sync_account_run(account_id=amazon_account.pk)
    failed = InboundEvent.objects.get(status=InboundStatus.FAILED)
    processed = InboundEvent.objects.filter(status=InboundStatus.PROCESSED).first()
    client.force_login(agent)
    discard = lambda pk, **data: client.post(reverse("channels:inbound-discard", args=[pk]), data)  # noqa: E731
    # then
    assert client.get(reverse("channels:account", args=[999_999])).status_code == 404
    assert client.get(reverse("channels:outbox-detail", args=[999_999])).status_code == 404
    assert client.get("/channels/not-a-number/").status_code == 404
    assert discard(999_999, reason="x").status_code == 404
    assert discard(failed.pk).status_code == 400
    assert discard(failed.pk, reason="x" * 2001).status_code == 400
    assert discard(processed.pk, reason="not failed").status_code == 409
    assert client.post(reverse("channels:inbound-reprocess", args=[999_999])).status_code == 404
    failed.refresh_from_db()
    processed.refresh_from_db()
    assert (failed.status, processed.status) == (InboundStatus.FAILED, InboundStatus.PROCESSED)
    assert not ChannelAccountEvent.objects.filter(kind="inbound_discarded").exists()
    # and a redirect never leaves the site
    response = client.post(
        reverse("channels:inbound-discard", args=[failed.pk]), {"reason": "spam", "next": "https://evil.example/"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("channels:account", args=[amazon_account.pk])


def test_the_admin_shows_the_channels_error_answer(client, admin_user, amazon_account):
    # given
    message = _parked_with_detail(amazon_account)
    client.force_login(admin_user)
    # when
    page = client.get(reverse("admin:channels_outboxmessage_change", args=[message.pk]))
    # then
    assert page.status_code == 200
    assert "The channel&#x27;s error answer" in page.text or "The channel's error answer" in page.text
    assert "&lt;b&gt;only numeric&lt;/b&gt;" in page.text and "packageReferenceId" in page.text
