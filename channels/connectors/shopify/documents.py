"""The GraphQL documents the Shopify connector sends, one ``.graphql`` file each in ``graphql/``.

A document that spreads ``...WaybillOrder`` is sent with the fragment (``order_fragment.graphql``)
appended, so every read of an order asks for the same fields. ``bulk_orders.graphql`` is the bulk
export's query; its search string holds ``{since}``, filled in when a backfill starts.
"""

from __future__ import annotations

from pathlib import Path

GRAPHQL_DIR = Path(__file__).with_name("graphql")
ORDER_FRAGMENT_SPREAD = "...WaybillOrder"


def _read(name: str) -> str:
    return (GRAPHQL_DIR / f"{name}.graphql").read_text(encoding="utf-8").rstrip("\n")


ORDER_FRAGMENT = _read("order_fragment")
BULK_ORDERS = _read("bulk_orders")


def load(name: str) -> str:
    """The document as it is sent: the file, with the order fragment appended where it is spread."""
    text = _read(name)
    return f"{text}\n{ORDER_FRAGMENT}" if ORDER_FRAGMENT_SPREAD in text else text


def orders_by_id(count: int) -> str:
    """One query reading ``count`` orders by id (``$id0`` … ``$id{count-1}``), one aliased ``order(id:)``
    each, with the order fragment: its requested cost is exactly ``count`` single-order reads, and one
    round trip carries them all."""
    if not 1 <= count <= 250:
        raise ValueError(f"orders_by_id reads 1 to 250 orders, not {count}")
    ids = ", ".join(f"$id{i}: ID!" for i in range(count))
    fields = "\n".join(f"  o{i}: order(id: $id{i}) {{ {ORDER_FRAGMENT_SPREAD} }}" for i in range(count))
    text = f"query OrdersById({ids}, $lineCount: Int!, $fulfillmentOrderCount: Int!) {{\n{fields}\n}}"
    return f"{text}\n{ORDER_FRAGMENT}"


# Every document the connector sends (the bulk export's query travels inside ``bulk_run``); tests
# validate each against the saved schema.
DOCUMENTS: dict[str, str] = {
    path.stem: load(path.stem)
    for path in sorted(GRAPHQL_DIR.glob("*.graphql"))
    if path.stem not in ("order_fragment", "bulk_orders")
}
