"""The broker down (a redis-server of the test's own, the cache and the Celery broker, as in production):
signed webhooks are still answered 200 and stored, and once the broker is back the dispatcher's drain
catches up on every one of them.

WAYBILL_CHAOS_BROKER_DOWN_SECONDS sets how long it stays down: 3 s on every CI run, 60 s with `make chaos`.
"""

from __future__ import annotations

import os
import time

import pytest
from celery import current_app
from kombu import pools as kombu_pools

from channels import tasks
from channels.models import InboundEvent, InboundKind, InboundStatus
from orders.models import Order
from tests.channels.test_shopify import _signed
from tests.chaos.conftest import figures

pytestmark = pytest.mark.django_db(transaction=True)

DOWN_SECONDS = float(os.environ.get("WAYBILL_CHAOS_BROKER_DOWN_SECONDS", "3"))


@pytest.fixture
def broker(own_redis, settings):
    """Cache and broker on the test's own redis; tasks really published (not run inline) while it lasts."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": own_redis.url}}
    conf = current_app.conf
    saved = conf.task_always_eager, conf.broker_url, conf.broker_transport_options
    conf.task_always_eager, conf.broker_url, conf.broker_transport_options = False, own_redis.url, {}
    _fresh_pools()
    try:
        yield own_redis
    finally:
        conf.task_always_eager, conf.broker_url, conf.broker_transport_options = saved
        _fresh_pools()


def _fresh_pools() -> None:
    """Celery's connection and producer pools are built from the configuration on first use: built again.

    Kombu keeps them in process-wide registries keyed by connection: those are closed and emptied too,
    or the next test in this process would get the closed pool of the restored broker back."""
    kombu_pools.reset()
    current_app._pool = None
    current_app.amqp._producer_pool = None


def test_webhooks_are_stored_while_the_broker_is_down_and_processed_after(
    client, shopify_sandbox, shopify_account, skus, broker
):
    # given: the broker goes down
    broker.stop()
    # when: the channel keeps delivering signed webhooks for new orders while it is down
    delivered, answered = 0, []
    until = time.monotonic() + DOWN_SECONDS
    while time.monotonic() < until or delivered < 10:
        (made,) = shopify_sandbox.state.generate(1, unknown_sku=False)
        body, headers = _signed(shopify_sandbox, made, "whsec-current", webhook_id=f"down-{delivered}")
        response = client.post(
            f"/webhooks/shopify/{shopify_account.pk}/", body, content_type="application/json", **headers
        )
        answered.append(response.status_code)
        delivered += 1
        time.sleep(0.05)
    # then: every delivery was answered 200 and stored, waiting for the drain
    assert set(answered) == {200}, answered
    waiting = InboundEvent.objects.filter(account=shopify_account, kind=InboundKind.WEBHOOK)
    assert waiting.filter(status=InboundStatus.RECEIVED).count() == delivered
    # when: the broker is back and beat's dispatcher runs (a worker takes what it queued: run here in order)
    broker.start()
    current_app.conf.task_always_eager = True
    summary = tasks.channels_dispatch_syncs_task()
    # then: every stored webhook is processed and its order exists, once
    processed = waiting.filter(status=InboundStatus.PROCESSED).count()
    orders = Order.objects.filter(account_id=shopify_account.pk).count()
    figures(
        "broker down",
        down_seconds=DOWN_SECONDS,
        webhooks_delivered=delivered,
        answered_200=answered.count(200),
        stored=waiting.count(),
        processed_after=processed,
        orders=orders,
        lost=delivered - processed,
    )
    assert summary["drains"] == 1
    assert processed == delivered == orders
