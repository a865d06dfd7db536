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
# An order's returns and refunds, as the returns read asks for them (``returns_fragment.graphql``).
RETURNS_FRAGMENT = _read("returns_fragment")
RETURNS_FRAGMENT_SPREAD = "...ReturnsOfOrder"
FRAGMENTS = ("order_fragment", "returns_fragment")


def load(name: str) -> str:
    """The document as it is sent: the file, with the fragments it spreads appended."""
    text = _read(name)
    if ORDER_FRAGMENT_SPREAD in text:
        text = f"{text}\n{ORDER_FRAGMENT}"
    if RETURNS_FRAGMENT_SPREAD in text:
        text = f"{text}\n{RETURNS_FRAGMENT}"
    return text


def _by_id(operation: str, spread: str, fragment: str, count: int, extra_variables: str = "") -> str:
    if not 1 <= count <= 250:
        raise ValueError(f"{operation} reads 1 to 250 orders, not {count}")
    ids = ", ".join(f"$id{i}: ID!" for i in range(count))
    fields = "\n".join(f"  o{i}: order(id: $id{i}) {{ {spread} }}" for i in range(count))
    return f"query {operation}({ids}{extra_variables}) {{\n{fields}\n}}\n{fragment}"


def orders_by_id(count: int) -> str:
    """One query reading ``count`` orders by id (``$id0`` … ``$id{count-1}``), one aliased ``order(id:)``
    each, with the order fragment: its requested cost is exactly ``count`` single-order reads, and one
    round trip carries them all."""
    return _by_id(
        "OrdersById",
        ORDER_FRAGMENT_SPREAD,
        ORDER_FRAGMENT,
        count,
        ", $lineCount: Int!, $fulfillmentOrderCount: Int!",
    )


def returns_by_id(count: int) -> str:
    """The returns and refunds of ``count`` orders by id, aliased as ``orders_by_id``'s."""
    return _by_id("OrderReturnsById", RETURNS_FRAGMENT_SPREAD, RETURNS_FRAGMENT, count)


# Every document the connector sends (the bulk export's query travels inside ``bulk_run``); tests
# validate each against the saved schema.
DOCUMENTS: dict[str, str] = {
    path.stem: load(path.stem)
    for path in sorted(GRAPHQL_DIR.glob("*.graphql"))
    if path.stem not in (*FRAGMENTS, "bulk_orders")
}
