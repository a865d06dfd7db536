"""Inventory tasks: idempotent, ids in, nothing but ids out."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def channel_availability_recompute_task(*, sku_ids: list[int]) -> None:
    from inventory.services.availability import channel_availability_recompute

    channel_availability_recompute(sku_ids=sku_ids)


@shared_task(acks_late=True, ignore_result=True)
def channel_availability_reconcile_task() -> int:
    from inventory.services.availability import channel_availability_reconcile

    return channel_availability_reconcile()
