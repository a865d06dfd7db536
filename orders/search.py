"""Order search without a full table scan: each field is matched by its own indexed predicate and the
order ids are combined, never one OR across tables (a parallel scan of every line at a million orders).

With pg_trgm installed (migration 0005 creates it where the server offers it) a term of three characters
or more matches anywhere in the order number, the channel reference, the customer's name and email and
the channel SKU, through trigram indexes on UPPER(column). Otherwise, and for shorter terms, it matches
the start of each value through the prefix indexes. Tracking numbers match exactly (their index is
fulfilment's). A leading "#" is ignored, so "1065" and "#1065" find the same Shopify order.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet

from orders.models import Order, OrderLine

# Ids taken from each predicate; the page says when a search hit the cap.
MAX_MATCHES_PER_FIELD = 5000
TRIGRAM = "trigram"
PREFIX = "prefix"
_trigram_installed: dict[str, bool] = {}


@dataclass(frozen=True)
class SearchInfo:
    term: str
    mode: str  # TRIGRAM or PREFIX
    capped: bool

    @property
    def label(self) -> str:
        if self.mode == TRIGRAM:
            return "trigram search (pg_trgm): matches anywhere in order number, reference, customer, email, SKU"
        return "prefix search: matches the start of order number, reference, customer, email, SKU"


def trigram_installed() -> bool:
    """Whether pg_trgm is installed in this database (cached per database alias and process)."""
    key = connection.settings_dict["NAME"]
    if key not in _trigram_installed:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            _trigram_installed[key] = cursor.fetchone() is not None
    return _trigram_installed[key]


def normalize_term(value: str) -> str:
    return value.strip().lstrip("#").strip()


def order_ids_matching(value: str) -> tuple[set[int], SearchInfo]:
    term = normalize_term(value)
    if not term:
        return set(), SearchInfo(term="", mode=PREFIX, capped=False)
    mode = TRIGRAM if len(term) >= 3 and trigram_installed() else PREFIX
    lookup = "icontains" if mode == TRIGRAM else "istartswith"
    cap = MAX_MATCHES_PER_FIELD
    queries = [
        Order.objects.filter(**{f"external_id__{lookup}": term}).values_list("pk", flat=True),
        Order.objects.filter(**{f"external_reference__{lookup}": term}).values_list("pk", flat=True),
        Order.objects.filter(**{f"customer_name__{lookup}": term}).values_list("pk", flat=True),
        Order.objects.filter(**{f"ship_to__email__{lookup}": term}).values_list("pk", flat=True),
        OrderLine.objects.filter(**{f"channel_sku__{lookup}": term}).values_list("order_id", flat=True),
        # Fulfilment's shipments by their relation name: orders never imports fulfillment.
        Order.objects.filter(shipments__tracking_number=term).values_list("pk", flat=True),
    ]
    if mode == PREFIX:
        # "1065" finds the Shopify name "#1065" too.
        queries.append(Order.objects.filter(external_reference__istartswith="#" + term).values_list("pk", flat=True))
    ids: set[int] = set()
    capped = False
    for query in queries:
        found = list(query[: cap + 1])
        capped = capped or len(found) > cap
        ids.update(found[:cap])
    return ids, SearchInfo(term=term, mode=mode, capped=capped)


def order_search(queryset: QuerySet[Order], value: str) -> tuple[QuerySet[Order], SearchInfo]:
    ids, info = order_ids_matching(value)
    if not info.term:
        return queryset, info
    return queryset.filter(pk__in=sorted(ids)), info
