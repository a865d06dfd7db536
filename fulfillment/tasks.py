"""Fulfilment's periodic work. Each task carries a batch, is idempotent and safe to redeliver (acks_late):
routing skips orders already routed, expiry and the tracking checks skip what they already did."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from fulfillment import selectors, services

ROUTER = "router"
BATCH = 100


@shared_task(acks_late=True)
def route_orders_task(order_ids: list[int]) -> dict:
    results = services.orders_route(order_ids=order_ids, actor=ROUTER)
    return {"routed": sum(1 for r in results if r.routed), "seen": len(results)}


@shared_task(acks_late=True)
def route_releasable_task(batch: int = BATCH, batches: int = 20) -> int:
    """Route open orders, earliest ship-by first, a batch per task."""
    queued = 0
    for _ in range(batches):
        ids = selectors.releasable_order_ids(limit=batch)
        if not ids:
            break
        services.orders_route(order_ids=ids, actor=ROUTER)
        queued += len(ids)
        if len(ids) < batch:
            break
    return queued


@shared_task(acks_late=True)
def route_retry_task(batch: int = BATCH) -> int:
    """Another attempt for routing exceptions, backorders, short-picked lines and filled backorders."""
    ids = selectors.retry_order_ids(limit=batch)
    if ids:
        services.orders_route(order_ids=ids, actor=ROUTER)
    return len(ids)


@shared_task(acks_late=True)
def idempotency_records_prune_task() -> int:
    return services.idempotency_records_prune(
        keep_hours=settings.WAYBILL_IDEMPOTENCY_KEEP_HOURS, actor="idempotency-retention"
    )


@shared_task(acks_late=True)
def pickups_expire_task() -> int:
    return len(services.pickups_expire_due(actor="pickup-expiry"))


@shared_task(acks_late=True)
def tracking_checks_task() -> dict:
    result = services.tracking_checks_run(actor="tracking-check")
    return {"missing_scan": len(result.missing_scan), "late": len(result.late)}


@shared_task(acks_late=True)
def exceptions_detect_task() -> dict:
    """Detection in seconds: ship-by at risk, late shipments, stalled tracking, no scan, late delivery."""
    result = services.exceptions_detect(actor="detector")
    checks = services.tracking_checks_run(actor="detector")
    return {
        "at_risk": len(result.at_risk),
        "late": len(result.late),
        "stalled": len(result.stalled),
        "missing_scan": len(checks.missing_scan),
        "late_delivery": len(checks.late),
        "settled": len(result.settled),
    }
