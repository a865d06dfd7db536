"""Bulk actions of the ops console: one service call per item, each in its own transaction, so a bulk
action over 100 cases where 3 fail applies the 97 and names the 3 with the reason each was refused."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction

from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError
from orders.models import Hold
from orders.services.exception_queue import (
    exception_case_acknowledge,
    exception_case_assign,
    exception_case_resolve,
)
from orders.services.holds import hold_release

# The most items one bulk call takes: select-all-matching beyond it asks for a narrower filter.
MAX_BULK_ITEMS = 5000
CASE_ACTIONS = ("assign", "acknowledge", "resolve")


class BulkError(DomainError):
    code = "bulk_error"


@dataclass
class BulkResult:
    action: str
    done: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.done) + len(self.failed)

    def summary(self, noun: str = "case") -> str:
        text = f"{self.action}: {len(self.done)} of {self.total} {noun}(s) done"
        if self.failed:
            named = "; ".join(f"#{pk}: {why}" for pk, why in list(self.failed.items())[:20])
            more = f" (and {len(self.failed) - 20} more)" if len(self.failed) > 20 else ""
            text += f". Not done, {len(self.failed)}: {named}{more}"
        return text


def bulk_apply(*, ids: Sequence[int], action: str, apply: Callable[[int], object]) -> BulkResult:
    """Apply ``apply`` to each id in its own transaction; a refusal (a domain error, a row gone) is
    recorded against the id and the others go on."""
    unique = sorted({int(pk) for pk in ids})
    if not unique:
        raise BulkError("select at least one item")
    if len(unique) > MAX_BULK_ITEMS:
        raise BulkError(f"{len(unique)} items selected: at most {MAX_BULK_ITEMS} per bulk action; narrow the filter")
    result = BulkResult(action=action)
    for pk in unique:
        try:
            with transaction.atomic():
                apply(pk)
        except (DomainError, ObjectDoesNotExist) as exc:
            result.failed[pk] = str(exc) or exc.__class__.__name__
        else:
            result.done.append(pk)
    return result


def exception_cases_bulk(
    *,
    case_ids: Sequence[int],
    action: str,
    actor: Actor,
    note: str = "",
    owner: AbstractBaseUser | None = None,
) -> BulkResult:
    """Assign (to ``owner``, or unassign with None), acknowledge or resolve (with ``note``) many cases."""
    actor_resolve(actor)
    if action not in CASE_ACTIONS:
        raise BulkError(f"unknown bulk action {action!r}; expected one of {', '.join(CASE_ACTIONS)}")
    if action == "resolve" and not (note or "").strip():
        raise BulkError("resolving cases needs a resolution note")
    if action == "assign":
        return bulk_apply(
            ids=case_ids, action="assign", apply=lambda pk: exception_case_assign(case=pk, owner=owner, actor=actor)
        )
    if action == "acknowledge":
        return bulk_apply(
            ids=case_ids, action="acknowledge", apply=lambda pk: exception_case_acknowledge(case=pk, actor=actor)
        )
    return bulk_apply(
        ids=case_ids, action="resolve", apply=lambda pk: exception_case_resolve(case=pk, note=note, actor=actor)
    )


def orders_holds_release_bulk(
    *, order_ids: Sequence[int], reason: str, actor: Actor, kind: str | None = None
) -> BulkResult:
    """Release the active holds (of ``kind``, or all) of many orders; an order with none is named."""
    actor_resolve(actor)
    if not (reason or "").strip():
        raise BulkError("releasing holds needs a reason")

    def release(order_id: int) -> None:
        holds = Hold.objects.filter(order_id=order_id, released_at__isnull=True)
        if kind:
            holds = holds.filter(kind=kind)
        hold_ids = list(holds.order_by("pk").values_list("pk", flat=True))
        if not hold_ids:
            raise BulkError("no active hold" + (f" of kind {kind}" if kind else ""))
        for hold_id in hold_ids:
            hold_release(hold=hold_id, reason=reason, actor=actor)

    return bulk_apply(ids=order_ids, action="release holds", apply=release)
