"""The sales account, as the core apps see it: a port the outer app that owns accounts implements.

An order and an exception case name the channel account they came from by id only (``account_id``):
``orders`` never imports ``channels``. What orders needs to know of an account is ``SalesAccount`` (its
id, kind and name); channels registers the provider at app start (``channels.apps``) and the functions
here ask it:

- ``account(id)`` one account, ``accounts(ids)`` many in one query (``{id: account}``);
- ``account_ids(kind=…)`` a subquery of ids for ``account_id__in=…`` lookups;
- ``account_value("name")`` a subquery expression for ``annotate``/``values``/``order_by``
  (``outer`` names the id column: ``"order__account_id"`` from a line);
- ``account_kinds()`` and ``account_choices()`` for filters;
- ``account_seed(kind=…, name=…)`` a disabled account for generated data.

``account_property()`` is the ``account`` attribute of a model that stores ``account_id``: reading it
asks the port once per instance, setting it sets the id, and ``prefetch_related("account")`` fetches the
accounts of a whole page in one query.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class SalesAccount(Protocol):
    id: int
    kind: str
    name: str


class AccountProvider(Protocol):
    def get_many(self, ids: list[int]) -> dict[int, SalesAccount]: ...

    def ids(self, **filters: Any) -> Any:
        """A values queryset of the ids of the accounts matching ``filters`` (usable as a subquery)."""

    def value(self, field: str, outer: str) -> Any:
        """A subquery expression: ``field`` of the account whose id is the outer query's ``outer``."""

    def kinds(self) -> list[tuple[str, str]]: ...

    def choices(self) -> list[tuple[int, str]]: ...

    def seed(self, *, kind: str, name: str) -> int:
        """A disabled account that points nowhere, for generated data; its id."""


class AccountsUnavailable(RuntimeError):
    pass


_provider: AccountProvider | None = None


def register(provider: AccountProvider) -> None:
    """Register (or replace) the provider: the app that owns sales accounts calls it at app start."""
    global _provider
    _provider = provider


def _the_provider() -> AccountProvider:
    if _provider is None:
        raise AccountsUnavailable("no sales account provider is registered (the channels app is not installed)")
    return _provider


def account(account_id: int | None) -> SalesAccount | None:
    if account_id is None:
        return None
    return _the_provider().get_many([account_id]).get(account_id)


def accounts(account_ids: Iterable[int | None]) -> dict[int, SalesAccount]:
    """The accounts of ``account_ids`` (None and repeats ignored) in one query, by id."""
    ids = sorted({i for i in account_ids if i is not None})
    if not ids:
        return {}
    return _the_provider().get_many(ids)


def account_ids(**filters: Any) -> Any:
    """The ids of the accounts matching ``filters`` (``kind="amazon"``, ``name__startswith="x"``) as a subquery."""
    return _the_provider().ids(**filters)


def account_value(field: str, *, outer: str = "account_id") -> Any:
    """A subquery expression for ``field`` (``"kind"``, ``"name"``) of the account whose id is ``outer``."""
    return _the_provider().value(field, outer)


def account_kinds() -> list[tuple[str, str]]:
    """Every kind of account there can be, as (value, label) choices."""
    return _the_provider().kinds()


def account_choices() -> list[tuple[int, str]]:
    """Every account as (id, name), by name."""
    return _the_provider().choices()


def account_seed(*, kind: str, name: str) -> int:
    """A disabled account that points nowhere, for generated data (seed_million); its id."""
    return _the_provider().seed(kind=kind, name=name)


def attach_accounts(instances: Iterable[Any], *, id_attr: str = "account_id", name: str = "account") -> None:
    """Fetch the accounts of ``instances`` in one query and cache each on its instance."""
    instances = list(instances)
    found = accounts(getattr(obj, id_attr) for obj in instances)
    for obj in instances:
        obj._state.fields_cache[name] = found.get(getattr(obj, id_attr))


class AccountProperty(property):
    """A model's ``account``: the account its ``account_id`` names, resolved through the port.

    A ``property`` (so a model's ``__init__`` takes ``account=``) that also speaks Django's prefetch
    protocol (``prefetch_related("account")``, ``"order__account"``: one query for the page)."""

    def __init__(self, id_attr: str = "account_id", name: str = "account") -> None:
        self.id_attr = id_attr
        self.cache_name = name
        super().__init__(self._get, self._set, doc="The sales account (through config.kernel.accounts)")

    def _cached(self, instance: Any) -> tuple[bool, Any]:
        value = instance._state.fields_cache.get(self.cache_name, _MISSING)
        wanted = getattr(instance, self.id_attr)
        if value is _MISSING:
            return False, None
        if (value is None and wanted is None) or (value is not None and value.id == wanted):
            return True, value
        return False, None

    def _get(self, instance: Any) -> Any:
        hit, value = self._cached(instance)
        if not hit:
            value = account(getattr(instance, self.id_attr))
            instance._state.fields_cache[self.cache_name] = value
        return value

    def _set(self, instance: Any, value: Any) -> None:
        setattr(instance, self.id_attr, None if value is None else value.id)
        instance._state.fields_cache[self.cache_name] = value

    # Django's prefetch protocol (django.db.models.query.prefetch_one_level).
    def is_cached(self, instance: Any) -> bool:
        return self._cached(instance)[0]

    def get_prefetch_querysets(self, instances: list[Any], querysets: Any = None) -> tuple:
        found = accounts(getattr(obj, self.id_attr) for obj in instances)
        return (
            list(found.values()),
            lambda acct: acct.id,
            lambda obj: getattr(obj, self.id_attr),
            True,
            self.cache_name,
            False,
        )

    def get_prefetch_queryset(self, instances: list[Any], queryset: Any = None) -> tuple:
        return self.get_prefetch_querysets(instances, None)


_MISSING = object()


def account_property(id_attr: str = "account_id", name: str = "account") -> AccountProperty:
    return AccountProperty(id_attr, name)
