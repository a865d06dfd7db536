"""Channel screens: health, runs (live partial), failed events with re-process, outbox with retry."""

from __future__ import annotations

import pytest
from django.urls import reverse

from channels.models import InboundEvent, InboundStatus, OutboxMessage, OutboxStatus
from channels.sync import sync_account_run

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
