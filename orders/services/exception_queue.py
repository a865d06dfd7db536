"""The exception queue: cases a person must settle, deduped on a key while unresolved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, OrderEvent, Severity
from orders.services.common import order_event_record


class ExceptionCaseError(DomainError):
    code = "exception_case_error"
    http_status = 409


@dataclass(frozen=True)
class CaseRule:
    """Per kind: how long a person has to act (the case's due time when the opener gives none)."""

    due_minutes: int


# Due-time rules per kind. Owners per kind come from settings.WAYBILL_CASE_OWNERS ({kind: username}).
CASE_RULES: dict[str, CaseRule] = {
    ExceptionKind.SHIP_BY_AT_RISK: CaseRule(30),
    ExceptionKind.LATE_SHIPMENT: CaseRule(60),
    ExceptionKind.DELIVERY_EXCEPTION: CaseRule(4 * 60),
    ExceptionKind.DELIVERY_LATE: CaseRule(8 * 60),
    ExceptionKind.STALLED_TRACKING: CaseRule(8 * 60),
    ExceptionKind.TRACKING_MISSING: CaseRule(8 * 60),
    ExceptionKind.UNMAPPED_SKU: CaseRule(2 * 60),
    ExceptionKind.UNMAPPED_LOCATION: CaseRule(2 * 60),
    ExceptionKind.NO_NODE: CaseRule(2 * 60),
    ExceptionKind.INSUFFICIENT_STOCK: CaseRule(4 * 60),
    ExceptionKind.SHORT_PICK: CaseRule(2 * 60),
    ExceptionKind.ADDRESS: CaseRule(4 * 60),
    ExceptionKind.CANCEL_REQUEST: CaseRule(60),
    ExceptionKind.OUTBOX_PARKED: CaseRule(2 * 60),
    ExceptionKind.SYNC_FAILURE: CaseRule(30),
    ExceptionKind.OVERSELL: CaseRule(60),
    ExceptionKind.PUSH_FAILING: CaseRule(60),
}
SEVERITY_ORDER = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]


def case_owner_for(kind: str):
    """The user a new case of this kind goes to (settings.WAYBILL_CASE_OWNERS), or None."""
    username = (getattr(settings, "WAYBILL_CASE_OWNERS", None) or {}).get(kind)
    if not username:
        return None
    return get_user_model().objects.filter(username=username, is_active=True).first()


def exception_case_dedupe_key(
    *, kind: str, order_id: int | None = None, account_id: int | None = None, sku_id: int | None = None
) -> str:
    return f"{kind}:order={order_id or '-'}:account={account_id or '-'}:sku={sku_id or '-'}"


def exception_case_open(
    *,
    kind: str,
    title: str,
    actor: Actor,
    detail: str = "",
    severity: str = Severity.MEDIUM,
    order_id: int | None = None,
    account_id: int | None = None,
    sku_id: int | None = None,
    due_at: datetime | None = None,
    dedupe_key: str | None = None,
    refresh_text: bool = False,
) -> tuple[ExceptionCase, bool]:
    """Open a case, or refresh the unresolved one with the same key (an earlier due time or a higher
    severity is taken; with ``refresh_text`` the title and detail are replaced by these, for a case that
    describes a situation that moves, such as the orders at risk of a metric; nothing else changes).
    Returns (case, created). With no ``due_at`` the kind's rule (CASE_RULES) sets it; a new case goes to the
    kind's owner (settings.WAYBILL_CASE_OWNERS) if any."""
    name, _ = actor_resolve(actor)
    if kind not in ExceptionKind.values:
        raise ExceptionCaseError(f"unknown exception kind {kind!r}")
    if severity not in Severity.values:
        raise ExceptionCaseError(f"unknown severity {severity!r}")
    key = dedupe_key or exception_case_dedupe_key(kind=kind, order_id=order_id, account_id=account_id, sku_id=sku_id)
    if due_at is None and kind in CASE_RULES:
        due_at = timezone.now() + timedelta(minutes=CASE_RULES[kind].due_minutes)
    existing = ExceptionCase.objects.filter(dedupe_key=key).exclude(status=CaseStatus.RESOLVED).first()
    if existing:
        changed = []
        if due_at is not None and (existing.due_at is None or due_at < existing.due_at):
            existing.due_at = due_at
            changed.append("due_at")
        if SEVERITY_ORDER.index(severity) > SEVERITY_ORDER.index(existing.severity):
            existing.severity = severity
            changed.append("severity")
        if refresh_text and (existing.title != title[:255] or existing.detail != detail):
            existing.title, existing.detail = title[:255], detail
            changed += ["title", "detail"]
        if changed:
            ExceptionCase.objects.filter(pk=existing.pk).update(**{f: getattr(existing, f) for f in changed})
        return existing, False
    try:
        # A savepoint: a concurrent opener that wins the unique index leaves our transaction usable.
        with transaction.atomic():
            case = ExceptionCase.objects.create(
                kind=kind,
                title=title[:255],
                detail=detail,
                severity=severity,
                dedupe_key=key,
                order_id=order_id,
                account_id=account_id,
                sku_id=sku_id,
                due_at=due_at,
                opened_by=name,
                owner=case_owner_for(kind),
            )
            if order_id:
                order_event_record(
                    order=case.order,
                    kind="exception_opened",
                    actor=actor,
                    reason=title,
                    data={"case_id": case.pk, "exception_kind": kind, "severity": severity},
                )
    except IntegrityError:
        return ExceptionCase.objects.exclude(status=CaseStatus.RESOLVED).get(dedupe_key=key), False
    return case, True


def _lock_case(case: ExceptionCase | int) -> ExceptionCase:
    case_id = case if isinstance(case, int) else case.pk
    return ExceptionCase.objects.select_for_update().get(pk=case_id)


def exception_case_assign(*, case: ExceptionCase | int, owner: AbstractBaseUser | None, actor: Actor) -> ExceptionCase:
    actor_resolve(actor)
    with transaction.atomic():
        locked = _lock_case(case)
        if locked.status == CaseStatus.RESOLVED:
            raise ExceptionCaseError(f"case #{locked.pk} is resolved; reopen it by opening a new case")
        locked.owner = owner
        locked.save(update_fields=["owner", "updated_at"])
    return locked


def exception_case_acknowledge(*, case: ExceptionCase | int, actor: Actor) -> ExceptionCase:
    _, user = actor_resolve(actor)
    with transaction.atomic():
        locked = _lock_case(case)
        if locked.status == CaseStatus.RESOLVED:
            raise ExceptionCaseError(f"case #{locked.pk} is already resolved")
        locked.status = CaseStatus.ACKNOWLEDGED
        if locked.owner_id is None and user is not None:
            locked.owner = user
        locked.save(update_fields=["status", "owner", "updated_at"])
    return locked


def exception_case_resolve(*, case: ExceptionCase | int, note: str, actor: Actor) -> ExceptionCase:
    name, _ = actor_resolve(actor)
    if not note or not note.strip():
        raise ExceptionCaseError("resolving a case needs a resolution note")
    with transaction.atomic():
        locked = _lock_case(case)
        if locked.status == CaseStatus.RESOLVED:
            raise ExceptionCaseError(
                f"case #{locked.pk} was already resolved by {locked.resolved_by} at {locked.resolved_at:%Y-%m-%d %H:%M}"
            )
        locked.status = CaseStatus.RESOLVED
        locked.resolved_by = name
        locked.resolved_at = timezone.now()
        locked.resolution_note = note.strip()
        locked.save(update_fields=["status", "resolved_by", "resolved_at", "resolution_note", "updated_at"])
        if locked.order_id:
            order_event_record(
                order=locked.order,
                kind="exception_resolved",
                actor=actor,
                reason=note.strip(),
                data={"case_id": locked.pk, "exception_kind": locked.kind},
            )
    return locked


@dataclass(frozen=True)
class CaseToOpen:
    """One case for exception_cases_open_new: an order's case of ``kind`` (due_at given by the caller)."""

    order_id: int
    kind: str
    title: str
    detail: str
    severity: str
    due_at: datetime | None
    sku_id: int | None = None


_OPEN_NEW_SQL = """
WITH v AS (
    SELECT * FROM unnest(%(order_ids)s::bigint[], %(kinds)s::text[], %(titles)s::text[], %(details)s::text[],
                         %(severities)s::text[], %(due)s::timestamptz[], %(sku_ids)s::bigint[], %(keys)s::text[],
                         %(owners)s::integer[])
           WITH ORDINALITY AS v(order_id, kind, title, detail, severity, due_at, sku_id, dedupe_key, owner_id, n)
), c AS (
    INSERT INTO {case} (kind, severity, status, title, detail, dedupe_key, owner_id, due_at, order_id, account_id,
                        sku_id, opened_by, resolved_by, resolved_at, resolution_note, created_at, updated_at)
    SELECT v.kind, v.severity, %(open)s, v.title, v.detail, v.dedupe_key, v.owner_id, v.due_at, v.order_id, NULL,
           v.sku_id, %(actor)s, '', NULL, '', now(), now()
      FROM v
     ORDER BY v.n
        ON CONFLICT (dedupe_key) WHERE status <> 'resolved' DO NOTHING
    RETURNING id, order_id, kind, severity, title
), ev AS (
    INSERT INTO {event} (order_id, kind, from_status, to_status, actor_user_id, actor, reason, data, created_at)
    SELECT c.order_id, 'exception_opened', '', '', %(user_id)s, %(actor)s, c.title,
           jsonb_build_object('case_id', c.id, 'exception_kind', c.kind, 'severity', c.severity), now()
      FROM c
     ORDER BY c.id
    RETURNING id
)
SELECT c.id, c.order_id, c.kind, (SELECT count(*) FROM ev) FROM c ORDER BY c.id
"""


def exception_cases_open_new(*, cases: Sequence[CaseToOpen], actor: Actor) -> dict[tuple[int, str], int] | None:
    """Open many orders' cases in ONE statement in the caller's transaction, each with its "exception_opened"
    order event, as exception_case_open opens a new one (the same dedupe key, owner and event). For callers
    that know no unresolved case with these keys exists (a batch router that read the orders a moment ago):
    when one does (a race), nothing is refreshed here; it returns None and the caller must roll its
    transaction back and open them one at a time with exception_case_open. Otherwise {(order_id, kind): case id}."""
    name, user = actor_resolve(actor)
    if not cases:
        return {}
    for case in cases:
        if case.kind not in ExceptionKind.values:
            raise ExceptionCaseError(f"unknown exception kind {case.kind!r}")
        if case.severity not in Severity.values:
            raise ExceptionCaseError(f"unknown severity {case.severity!r}")
    owners = {kind: case_owner_for(kind) for kind in {c.kind for c in cases}}
    now = timezone.now()
    due = [
        c.due_at
        if c.due_at is not None or c.kind not in CASE_RULES
        else now + timedelta(minutes=CASE_RULES[c.kind].due_minutes)
        for c in cases
    ]
    params = {
        "order_ids": [c.order_id for c in cases],
        "kinds": [c.kind for c in cases],
        "titles": [c.title[:255] for c in cases],
        "details": [c.detail for c in cases],
        "severities": [c.severity for c in cases],
        "due": due,
        "sku_ids": [c.sku_id for c in cases],
        "keys": [exception_case_dedupe_key(kind=c.kind, order_id=c.order_id, sku_id=c.sku_id) for c in cases],
        "owners": [owners[c.kind].pk if owners[c.kind] is not None else None for c in cases],
        "open": CaseStatus.OPEN,
        "actor": name,
        "user_id": user.pk if user is not None else None,
    }
    sql = _OPEN_NEW_SQL.format(case=ExceptionCase._meta.db_table, event=OrderEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if len(rows) != len(cases) or rows[0][3] != len(cases):
        return None
    return {(order_id, kind): case_id for case_id, order_id, kind, _ in rows}
