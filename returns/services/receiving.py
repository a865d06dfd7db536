"""Receiving and inspecting returned units, at any node (a store, the DC, a returns 3PL).

A receipt names, per unit group, the return line (or the SKU / barcode scanned), the quantity and the
disposition: pending (inspect later) or restock, refurbish, damaged, destroy, return to vendor.
Units land in the node's receiving bucket, then leave it by disposition (inventory.stock_returns_apply):
restocked units are sellable again (and announced, so the channels advertise them within seconds);
refurbish and damaged units stay on hand in buckets that never count toward available-to-promise.

Replays: a receipt is keyed (``idempotency_key``); the same key again returns the first result and
changes nothing, also when two processes post it at once (the RMA row lock orders them; the second
finds the receipt). The stock movements carry keys derived from it as a second guard.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F, Q

from config.kernel.actors import Actor, actor_resolve
from inventory import services as inventory_services
from inventory.models import Location
from orders import services as order_services
from returns.models import Disposition, ReturnAuthorization, ReturnLine, ReturnReceipt, ReturnUnit
from returns.services.common import ReturnConflict, ReturnError, rma_event_record, rma_lock, units_checked
from returns.services.lifecycle import RECEIVABLE, rma_status_after_units

FINAL_DISPOSITIONS = tuple(d for d in Disposition.values if d != Disposition.PENDING)


@dataclass(frozen=True)
class ReceiveItem:
    """One group of units: the return line by id, or the SKU code / barcode scanned."""

    quantity: int
    disposition: str = Disposition.PENDING
    return_line_id: int | None = None
    sku: str = ""
    note: str = ""


@dataclass
class ReceiveResult:
    rma: ReturnAuthorization
    receipt: ReturnReceipt
    replayed: bool = False
    units: list[dict] = field(default_factory=list)


def _resolve_lines(rma: ReturnAuthorization, items: list[ReceiveItem]) -> list[tuple[ReturnLine, ReceiveItem]]:
    lines = list(rma.lines.select_related("order_line__sku").order_by("pk"))
    by_id = {line.pk: line for line in lines}
    out = []
    for index, item in enumerate(items, start=1):
        where = f"item {index}"
        if item.disposition not in Disposition.values:
            raise ReturnError(
                f"{where}: disposition {item.disposition!r} does not exist; use one of {', '.join(Disposition.values)}"
            )
        units_checked(item.quantity, where)
        if item.return_line_id is not None:
            line = by_id.get(item.return_line_id)
            if line is None:
                raise ReturnError(f"{where}: return line #{item.return_line_id} is not on RMA {rma.rma_number}")
        else:
            scanned = (item.sku or "").strip()
            if not scanned:
                raise ReturnError(f"{where}: scan a SKU or barcode, or name the return line")
            matches = [
                line
                for line in lines
                if (
                    line.order_line.sku is not None
                    and scanned.casefold()
                    in (line.order_line.sku.code.casefold(), (line.order_line.sku.barcode or "").casefold())
                )
                or line.order_line.channel_sku.casefold() == scanned.casefold()
            ]
            if not matches:
                raise ReturnError(f"{where}: SKU or barcode {scanned!r} is not on RMA {rma.rma_number}")
            # Several lines of the same SKU: the first with units still to come.
            open_matches = [line for line in matches if line.quantity_received < line.quantity]
            line = (open_matches or matches)[0]
        if line.order_line.sku_id is None:
            raise ReturnError(
                f"{where}: line {line.order_line.external_id} has no mapped SKU ({line.order_line.channel_sku}); "
                "map it before receiving"
            )
        out.append((line, item))
    return out


def _asked(items, location_id: int | None) -> list:
    """What a receipt asked for, to tell a replay from a different receipt under the same key."""
    return [
        [location_id, item.return_line_id, (item.sku or "").strip().casefold(), item.quantity, item.disposition]
        for item in items
    ]


def rma_receive(
    *,
    rma_id: int,
    location_id: int,
    items: list[ReceiveItem],
    actor: Actor,
    idempotency_key: str = "",
) -> ReceiveResult:
    """Receive (and optionally inspect) returned units of an RMA at a node, all or nothing."""
    name, _ = actor_resolve(actor)
    key = (idempotency_key or "").strip() or f"auto:{uuid.uuid4()}"
    if len(key) > 255:
        raise ReturnError("an idempotency key has at most 255 characters")
    if not items:
        raise ReturnError("a receipt needs at least one item")
    if not isinstance(location_id, int) or not Location.objects.filter(pk=location_id).exists():
        raise ReturnError(f"location {location_id!r} does not exist")
    with transaction.atomic():
        rma = rma_lock(rma_id)
        existing = ReturnReceipt.objects.filter(idempotency_key=key).first()
        asked = _asked(items, location_id)
        if existing is not None:
            if existing.rma_id != rma.pk or existing.result.get("asked", asked) != asked:
                raise ReturnConflict(f"idempotency key {key!r} was already used for a different receipt")
            return ReceiveResult(rma=rma, receipt=existing, replayed=True, units=existing.result.get("units", []))
        if rma.status not in RECEIVABLE:
            raise ReturnConflict(f"RMA {rma.rma_number} is {rma.status}: it cannot receive units")
        resolved = _resolve_lines(rma, items)
        lines = {line.pk: line for line in ReturnLine.objects.select_for_update().filter(rma=rma).order_by("pk")}
        wanted: dict[int, int] = defaultdict(int)
        for line, item in resolved:
            wanted[line.pk] += item.quantity
        for line_id, units in wanted.items():
            line = lines[line_id]
            left = line.quantity - line.quantity_received
            if units > left:
                raise ReturnConflict(
                    f"RMA {rma.rma_number} line {line.order_line.external_id} ({line.order_line.channel_sku}): "
                    f"{units} unit(s) posted, {left} still expected of {line.quantity}"
                )
        receipt = ReturnReceipt.objects.create(rma=rma, location_id=location_id, idempotency_key=key, actor=name)
        stock_units = []
        unit_rows = []
        summary = []
        for index, (line, item) in enumerate(resolved):
            target = None if item.disposition == Disposition.PENDING else item.disposition
            stock_units.append(
                inventory_services.ReturnedUnits(
                    sku_id=line.order_line.sku_id,
                    location_id=location_id,
                    quantity=item.quantity,
                    target=target,
                    key=f"rma-receipt:{receipt.pk}:{index}",
                )
            )
            unit_rows.append(
                ReturnUnit(
                    line_id=line.pk,
                    receipt=receipt,
                    location_id=location_id,
                    quantity=item.quantity,
                    disposition=item.disposition,
                    note=item.note[:2000],
                    actor=name,
                )
            )
            summary.append(
                {
                    "return_line_id": line.pk,
                    "sku": line.order_line.sku.code,
                    "quantity": item.quantity,
                    "disposition": item.disposition,
                }
            )
        inventory_services.stock_returns_apply(units=stock_units, reference=rma.rma_number, actor=actor)
        ReturnUnit.objects.bulk_create(unit_rows)
        inspected: dict[int, int] = defaultdict(int)
        last_disposition: dict[int, str] = {}
        for line, item in resolved:
            if item.disposition != Disposition.PENDING:
                inspected[line.pk] += item.quantity
                last_disposition[line.pk] = item.disposition
        for line_id, units in wanted.items():
            updates = {"quantity_received": F("quantity_received") + units}
            if inspected.get(line_id):
                updates["quantity_inspected"] = F("quantity_inspected") + inspected[line_id]
                updates["disposition"] = last_disposition[line_id]
            ReturnLine.objects.filter(pk=line_id).update(**updates)
        order_services.order_lines_returned_record(
            order_id=rma.order_id,
            units={lines[line_id].order_line_id: units for line_id, units in wanted.items()},
            actor=actor,
            reference=rma.rma_number,
            reason=f"{rma.rma_number}: units received",
        )
        receipt.result = {"units": summary, "location_id": location_id, "asked": asked}
        receipt.save(update_fields=["result"])
        rma_event_record(
            rma=rma,
            kind="received",
            actor=actor,
            data={"receipt": receipt.pk, "location_id": location_id, "units": summary},
        )
        if rma.return_location_id is None:
            rma.return_location_id = location_id
            rma.save(update_fields=["return_location", "updated_at"])
        rma_status_after_units(rma, actor=actor)
        _exchange_release_on_receipt(rma, actor=actor)
    return ReceiveResult(rma=rma, receipt=receipt, units=summary)


@dataclass(frozen=True)
class InspectItem:
    quantity: int
    disposition: str
    return_line_id: int | None = None
    sku: str = ""
    note: str = ""


def rma_inspect(
    *,
    rma_id: int,
    items: list[InspectItem],
    actor: Actor,
    idempotency_key: str = "",
    location_id: int | None = None,
) -> ReceiveResult:
    """Give received units that await inspection (disposition pending) their disposition. Keyed like a
    receipt: the same key again changes nothing. With ``location_id`` (a node inspecting what it holds) only
    the units received at that node are inspected."""
    name, _ = actor_resolve(actor)
    key = (idempotency_key or "").strip() or f"auto:{uuid.uuid4()}"
    if len(key) > 255:
        raise ReturnError("an idempotency key has at most 255 characters")
    if not items:
        raise ReturnError("an inspection needs at least one item")
    for index, item in enumerate(items, start=1):
        if item.disposition not in FINAL_DISPOSITIONS:
            raise ReturnError(
                f"item {index}: disposition {item.disposition!r} does not exist for an inspection; "
                f"use one of {', '.join(FINAL_DISPOSITIONS)}"
            )
    with transaction.atomic():
        rma = rma_lock(rma_id)
        existing = ReturnReceipt.objects.filter(idempotency_key=key).first()
        asked = _asked(items, location_id)
        if existing is not None:
            if existing.rma_id != rma.pk or existing.result.get("asked", asked) != asked:
                raise ReturnConflict(f"idempotency key {key!r} was already used for a different inspection")
            return ReceiveResult(rma=rma, receipt=existing, replayed=True, units=existing.result.get("units", []))
        resolved = _resolve_lines(
            rma, [ReceiveItem(i.quantity, i.disposition, i.return_line_id, i.sku, i.note) for i in items]
        )
        pending_rows = (
            ReturnUnit.objects.select_for_update()
            .filter(line__rma=rma, disposition=Disposition.PENDING)
            .filter(quantity_inspected__lt=F("quantity"))
        )
        if location_id is not None:
            pending_rows = pending_rows.filter(location_id=location_id)
        pending = list(pending_rows.order_by("pk"))
        where = ""
        if location_id is not None:
            code = Location.objects.filter(pk=location_id).values_list("code", flat=True).first()
            where = f" at {code or f'location #{location_id}'}"
        receipt = None
        stock_units, unit_rows, summary = [], [], []
        per_line: dict[int, int] = defaultdict(int)
        last: dict[int, str] = {}
        for index, (line, item) in enumerate(resolved):
            need = item.quantity
            sources = [p for p in pending if p.line_id == line.pk and p.quantity_inspected < p.quantity]
            available = sum(p.quantity - p.quantity_inspected for p in sources)
            if need > available:
                raise ReturnConflict(
                    f"RMA {rma.rma_number} line {line.order_line.external_id} ({line.order_line.channel_sku}): "
                    f"{need} unit(s) to inspect, {available} await inspection{where}"
                )
            for source in sources:
                if need == 0:
                    break
                take = min(need, source.quantity - source.quantity_inspected)
                need -= take
                source.quantity_inspected += take
                if receipt is None:
                    receipt = ReturnReceipt.objects.create(
                        rma=rma, location_id=source.location_id, idempotency_key=key, actor=name
                    )
                stock_units.append(
                    inventory_services.ReturnedUnits(
                        sku_id=line.order_line.sku_id,
                        location_id=source.location_id,
                        quantity=take,
                        target=item.disposition,
                        inspect_only=True,
                        key=f"rma-inspect:{receipt.pk}:{index}:{source.pk}",
                    )
                )
                unit_rows.append(
                    ReturnUnit(
                        line_id=line.pk,
                        receipt=receipt,
                        location_id=source.location_id,
                        quantity=take,
                        disposition=item.disposition,
                        inspected_from=source,
                        note=item.note[:2000],
                        actor=name,
                    )
                )
            per_line[line.pk] += item.quantity
            last[line.pk] = item.disposition
            summary.append(
                {
                    "return_line_id": line.pk,
                    "sku": line.order_line.sku.code,
                    "quantity": item.quantity,
                    "disposition": item.disposition,
                }
            )
        inventory_services.stock_returns_apply(units=stock_units, reference=rma.rma_number, actor=actor)
        for source in pending:
            ReturnUnit.objects.filter(pk=source.pk).update(quantity_inspected=source.quantity_inspected)
        ReturnUnit.objects.bulk_create(unit_rows)
        for line_id, units in per_line.items():
            ReturnLine.objects.filter(pk=line_id).update(
                quantity_inspected=F("quantity_inspected") + units, disposition=last[line_id]
            )
        receipt.result = {"kind": "inspection", "units": summary, "asked": asked}
        receipt.save(update_fields=["result"])
        rma_event_record(rma=rma, kind="inspected", actor=actor, data={"receipt": receipt.pk, "units": summary})
        rma_status_after_units(rma, actor=actor)
    return ReceiveResult(rma=rma, receipt=receipt, units=summary)


def _exchange_release_on_receipt(rma: ReturnAuthorization, *, actor: Actor) -> None:
    """An exchange whose replacement waits for the return: release its hold once units arrived."""
    if rma.exchange_order_id is None:
        return
    from returns.services.exchanges import exchange_release

    exchange_release(rma=rma, actor=actor)


def pending_units_q() -> Q:
    return Q(disposition=Disposition.PENDING) & Q(quantity_inspected__lt=F("quantity"))
