"""Shopify GraphQL Admin API sandbox: queries run by graphql-core against the saved 2026-07 schema.

``POST /admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``. Documents are validated
against ../shared/channel-specs/shopify-admin-graphql-2026-07.graphql and executed with resolvers
over the sandbox's orders. Before running a document the sandbox checks what Shopify checks, in
Shopify's order and envelope (HTTP 200, ``errors[].extensions.code``): schema validation, variables
coerced against their input types (INVALID_VARIABLE), input arrays of at most 250, ``first``/``last``
given on every connection and at most 250 (BAD_REQUEST), and the single-query cost limit of 1,000
(MAX_COST_EXCEEDED) with the cost computed as Shopify documents it: a scalar or enum 0, an object 1,
a connection 2 + first/last x one node, a mutation 10. That is an upper bound (Shopify's measured
requested costs are lower), so a document the sandbox accepts fits Shopify too. Once a query has run, the
bucket is refunded the difference between its requested cost and its actual cost (the same count with every
connection sized by the nodes it returned), as Shopify does. Bulk queries are held
to the bulk limits (one query, at least one and at most five connections, nested at most two levels,
no top-level node/nodes) and refused with bulkOperationRunQuery userErrors (code INVALID). Every
response that ran carries ``extensions.cost``; an empty bucket answers THROTTLED.

The shop has a catalog of product variants by SKU (ordered or not) that ``productVariants(query:
"sku:…")`` searches, and inventorySetQuantities records the quantity per inventory item.

Admin endpoints of this sandbox (besides those every sandbox has):
  POST /_sandbox/catalog                  {"add": [sku, …], "remove": [sku, …]}
  POST /_sandbox/orders/{order_id}/edit   {"address": {…}, "buyer_name", "email", "shipping_method":
                                           [title, code], "lines": {line_id: {"sku", "unit_price"}}}
                                           (a merchant's edit after the order was placed; moves updatedAt)

Webhooks (REST-shaped JSON, ``X-Shopify-Hmac-Sha256`` over the raw body) go to ``webhook_url``
when one is set, from a background thread, unless the ``drop_webhooks`` fault is on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    build_schema,
    execute,
    get_named_type,
    get_nullable_type,
    is_input_type,
    is_leaf_type,
    is_list_type,
    parse,
    type_from_ast,
    validate,
    value_from_ast,
)
from graphql.execution.values import get_directive_values, get_variable_values
from graphql.utilities.validate_input_value import validate_input_value

from channels.sandbox.base import Request, Response, SandboxApp, SandboxOrder, SandboxState, iso_z, utcnow

SCHEMA_FILE = "shopify-admin-graphql-2026-07.graphql"
SUPPORTED_VERSIONS = ("2026-01", "2026-04", "2026-07", "2026-10")
LOCATION_ID = "gid://shopify/Location/1"
LOCATION_NAME = "Sandbox warehouse"
# The shop's retail store, offered to buyers as local pickup.
STORE_LOCATION_ID = "gid://shopify/Location/2"
STORE_LOCATION_NAME = "Sandbox San Francisco store"
LOCATIONS = {LOCATION_ID: LOCATION_NAME, STORE_LOCATION_ID: STORE_LOCATION_NAME}
UPDATED_AT_FILTER = re.compile(r"updated_at:(>=|>|<=|<)'([^']+)'")
# The sandbox's cancel reasons (shared with the other sandboxes) as Shopify's OrderCancelReason.
CANCEL_REASONS = {
    "BuyerCanceled": "CUSTOMER",
    "NoInventory": "INVENTORY",
    "GeneralAdjustment": "OTHER",
    "Fraud": "FRAUD",
    "PaymentDeclined": "DECLINED",
    "StaffCancel": "STAFF",
}
CANCEL_REASON_VALUES = frozenset(CANCEL_REASONS.values())

_schema: GraphQLSchema | None = None
_schema_lock = threading.Lock()


def schema_path() -> Path:
    from django.conf import settings

    return Path(getattr(settings, "SHOPIFY_SCHEMA_PATH", "") or Path(settings.CHANNEL_SPECS_DIR) / SCHEMA_FILE)


def shopify_schema() -> GraphQLSchema:
    """The saved Admin schema, built once per process (3.8 MB of SDL, about 3 s)."""
    global _schema
    with _schema_lock:
        if _schema is None:
            # graphql-core 3.3 rejects a deprecated implementation of a non-deprecated interface
            # field in Shopify's published schema; documents are still validated in full.
            _schema = build_schema(schema_path().read_text(), assume_valid=True)
        return _schema


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def _unb64(cursor: str) -> dict:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as exc:
        raise GraphQLError("Invalid cursor", extensions={"code": "BAD_REQUEST"}) from exc


def _numeric(gid: str) -> str:
    return gid.rsplit("/", 1)[-1]


def variant_ids(sku: str) -> tuple[str, str]:
    """(ProductVariant GID, InventoryItem GID) for a SKU: stable across runs."""
    number = int(hashlib.sha256(sku.encode()).hexdigest()[:8], 16) % 10_000_000
    return f"gid://shopify/ProductVariant/{40_000_000 + number}", f"gid://shopify/InventoryItem/{50_000_000 + number}"


def _money(amount, currency: str) -> dict:
    value = {"amount": f"{amount:.2f}", "currencyCode": currency}
    return {"shopMoney": value, "presentmentMoney": value}


def _connection(items: list, first: int | None, after: str | None, bulk: bool, key=None) -> dict:
    if first is None and not bulk:
        raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
    if first is not None and not 0 <= first <= 250:
        raise GraphQLError(
            "first cannot exceed 250. To query larger amounts of data with fewer limits, "
            "bulk operations should be used instead.",
            extensions={"code": "BAD_REQUEST"},
        )
    start = 0
    if after:
        start = int(_unb64(after).get("offset", -1)) + 1
    chosen = items[start:] if first is None else items[start : start + first]
    edges = [{"cursor": _b64({"offset": start + i}), "node": node} for i, node in enumerate(chosen)]
    return {
        "edges": edges,
        "nodes": chosen,
        "pageInfo": {
            "hasNextPage": start + len(chosen) < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


# --- what Shopify checks before it runs a document ------------------------------------------------
#
# Order of the checks, as Shopify answers them: parse, schema validation, variable coercion
# (INVALID_VARIABLE, no cost block), connection page sizes (first/last given and at most 250), the
# single-query cost limit (MAX_COST_EXCEEDED, no cost block), then the leaky bucket (THROTTLED).

MAX_QUERY_COST = 1000
MAX_PAGE_SIZE = 250
BULK_MAX_CONNECTIONS = 5
BULK_MAX_DEPTH = 2
MUTATION_COST = 10

# graphql-core's validation messages → the codes Shopify puts in extensions.code.
_VALIDATION_CODES = (
    ("Cannot query field", "undefinedField"),
    ("Unknown argument", "argumentNotAccepted"),
    ("is required, but it was not provided", "missingRequiredArguments"),
    ("Unknown type", "undefinedType"),
    ("is never used", "variableNotUsed"),
    ("is not defined", "variableNotDefined"),
    ("must have a selection of subfields", "selectionMismatch"),
    ("must not have a selection since type", "selectionMismatch"),
    ("Unknown fragment", "undefinedFragment"),
    ("Unknown directive", "undefinedDirective"),
)


def validation_code(message: str) -> str:
    for fragment, code in _VALIDATION_CODES:
        if fragment in message:
            return code
    return "GRAPHQL_VALIDATION_FAILED"


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def _fields(selection_set, parent: GraphQLNamedType, fragments: dict, schema: GraphQLSchema):
    """(field node, its definition) selected on ``parent``, fragments expanded in place."""
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            fields = getattr(parent, "fields", None) or {}
            definition = fields.get(selection.name.value)
            if definition is not None:
                yield selection, definition
        else:
            if isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is None:
                    continue
                condition, inner = fragment.type_condition, fragment.selection_set
            else:
                condition, inner = selection.type_condition, selection.selection_set
            target = schema.get_type(condition.name.value) if condition else parent
            yield from _fields(inner, target or parent, fragments, schema)


def _argument(node: FieldNode, definition, name: str, variables: dict) -> Any:
    """The value an argument will have when the field runs (literal, variable or default)."""
    for argument in node.arguments or ():
        if argument.name.value == name:
            arg_def = definition.args.get(name)
            if arg_def is None:
                return None
            value = value_from_ast(argument.value, arg_def.type, variables)
            return None if value is Undefined else value
    arg_def = definition.args.get(name)
    return arg_def.default_value if arg_def is not None and arg_def.default_value is not Undefined else None


def is_connection(type_: GraphQLNamedType) -> bool:
    return isinstance(type_, GraphQLObjectType) and type_.name.endswith("Connection") and "pageInfo" in type_.fields


def _node_selections(node: FieldNode, connection: GraphQLObjectType, fragments, schema):
    """The selection sets that pick the connection's nodes: ``nodes { … }`` and ``edges { node { … } }``."""
    node_type = get_named_type(connection.fields["nodes"].type) if "nodes" in connection.fields else None
    for field, definition in _fields(node.selection_set, connection, fragments, schema):
        if field.name.value == "nodes":
            yield field.selection_set, get_named_type(definition.type)
        elif field.name.value == "edges":
            edge = get_named_type(definition.type)
            for inner, inner_def in _fields(field.selection_set, edge, fragments, schema):
                if inner.name.value == "node":
                    yield inner.selection_set, get_named_type(inner_def.type) or node_type


def requested_cost(schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode, variables: dict):
    """The requested cost as Shopify documents it: a scalar or enum 0, an object 1 plus its children,
    a connection 2 plus first/last times the cost of one node, a list of objects its size (``first``
    where it takes one) times one element, a mutation field 10 plus its payload."""
    fragments = _fragments(document)

    def selection_cost(selection_set, parent) -> int:
        total = 0
        for node, definition in _fields(selection_set, parent, fragments, schema):
            total += field_cost(node, definition)
        return total

    def field_cost(node: FieldNode, definition) -> int:
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        if is_connection(named):
            size = _argument(node, definition, "first", variables) or _argument(node, definition, "last", variables)
            per_node = max(
                (
                    1 + selection_cost(inner, node_type)
                    for inner, node_type in _node_selections(node, named, fragments, schema)
                ),
                default=0,
            )
            return 2 + int(size or 1) * per_node
        children = selection_cost(node.selection_set, named)
        if is_list_type(get_nullable_type(definition.type)):
            size = _argument(node, definition, "first", variables) if "first" in definition.args else None
            return int(size or 1) * (1 + children)
        return 1 + children

    root = schema.mutation_type if operation.operation == OperationType.MUTATION else schema.query_type
    total = 0
    for node, definition in _fields(operation.selection_set, root, fragments, schema):
        cost = field_cost(node, definition)
        if operation.operation == OperationType.MUTATION:
            cost = MUTATION_COST + cost - 1  # the payload object itself is the mutation's 10
        total += cost
    return max(total, 1)


def actual_cost(schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode, data: Any) -> int:
    """The cost of what the query returned, as ``requested_cost`` counts it but with every connection and list
    sized by the nodes it actually holds (an empty page costs its 2): Shopify refunds the bucket the difference
    between the requested and the actual cost once the query has run. A mutation costs what it requested."""
    fragments = _fragments(document)

    def key(node: FieldNode) -> str:
        return node.alias.value if node.alias else node.name.value

    def selection_cost(selection_set, parent, value) -> int:
        if not isinstance(value, dict):
            return 0
        return sum(
            field_cost(node, definition, value.get(key(node)))
            for node, definition in _fields(selection_set, parent, fragments, schema)
        )

    def field_cost(node: FieldNode, definition, value) -> int:
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        if is_connection(named):
            total = 2
            connection = value if isinstance(value, dict) else {}
            for field, field_def in _fields(node.selection_set, named, fragments, schema):
                items = connection.get(key(field)) or []
                if field.name.value == "nodes":
                    node_type = get_named_type(field_def.type)
                    total += sum(1 + selection_cost(field.selection_set, node_type, item) for item in items)
                elif field.name.value == "edges":
                    edge_type = get_named_type(field_def.type)
                    for inner, inner_def in _fields(field.selection_set, edge_type, fragments, schema):
                        if inner.name.value == "node":
                            node_type = get_named_type(inner_def.type)
                            total += sum(
                                1 + selection_cost(inner.selection_set, node_type, (edge or {}).get(key(inner)))
                                for edge in items
                            )
            return total
        if isinstance(value, list):
            return sum(1 + selection_cost(node.selection_set, named, item) for item in value)
        return 1 + selection_cost(node.selection_set, named, value)

    root = schema.query_type
    return max(
        sum(
            field_cost(node, definition, (data or {}).get(key(node)))
            for node, definition in _fields(operation.selection_set, root, fragments, schema)
        ),
        1,
    )


def page_size_problems(schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode, variables):
    """Every connection must be given first or last, at most 250 (outside bulk operations)."""
    fragments = _fragments(document)
    problems: list[dict] = []

    def walk(selection_set, parent, path: list[str]) -> None:
        for node, definition in _fields(selection_set, parent, fragments, schema):
            named = get_named_type(definition.type)
            here = [*path, (node.alias or node.name).value]
            if is_connection(named):
                first = _argument(node, definition, "first", variables)
                last = _argument(node, definition, "last", variables)
                location = (
                    {"line": node.loc.start_token.line, "column": node.loc.start_token.column} if node.loc else {}
                )
                if first is None and last is None:
                    problems.append(_page_error("you must provide one of first or last", here, location))
                for name, value in (("first", first), ("last", last)):
                    if value is not None and value > MAX_PAGE_SIZE:
                        problems.append(
                            _page_error(
                                f"{name} cannot exceed {MAX_PAGE_SIZE}. To query larger amounts of data with fewer "
                                "limits, bulk operations should be used instead.",
                                here,
                                location,
                            )
                        )
                    elif value is not None and value < 0:
                        problems.append(_page_error(f"{name} cannot be negative", here, location))
            if not is_leaf_type(named) and node.selection_set:
                walk(node.selection_set, named, here)

    root = schema.mutation_type if operation.operation == OperationType.MUTATION else schema.query_type
    walk(operation.selection_set, root, [])
    return problems


def _page_error(message: str, path: list[str], location: dict) -> dict:
    error: dict[str, Any] = {"message": message, "path": path, "extensions": {"code": "BAD_REQUEST"}}
    if location:
        error["locations"] = [location]
    return error


def bulk_query_problems(schema: GraphQLSchema, document: DocumentNode) -> list[str]:
    """The bulk operation limits (bulkOperationRunQuery's description and the bulk operations guide): a
    query, at least one connection, at most five connections, connections nested at most two levels
    deep, and no top-level node/nodes."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
        return ["Bulk operations must contain exactly one query operation."]
    operation = operations[0]
    fragments = _fragments(document)
    problems = []
    connections = 0
    deepest = 0

    def walk(selection_set, parent, depth: int) -> None:
        nonlocal connections, deepest
        for node, definition in _fields(selection_set, parent, fragments, schema):
            named = get_named_type(definition.type)
            level = depth
            if is_connection(named):
                connections += 1
                level = depth + 1
                deepest = max(deepest, level)
            if not is_leaf_type(named) and node.selection_set:
                walk(node.selection_set, named, level)

    for node, _definition in _fields(operation.selection_set, schema.query_type, fragments, schema):
        if node.name.value in ("node", "nodes"):
            problems.append(f"Bulk queries cannot contain a top-level `{node.name.value}` field.")
    walk(operation.selection_set, schema.query_type, 0)
    if connections == 0:
        problems.append("Bulk queries must contain at least one connection.")
    if connections > BULK_MAX_CONNECTIONS:
        problems.append(
            f"Bulk queries cannot contain more than {BULK_MAX_CONNECTIONS} connections (this one has {connections})."
        )
    if deepest > BULK_MAX_DEPTH:
        problems.append(
            f"Bulk queries cannot contain connections with a nesting depth greater than {BULK_MAX_DEPTH} "
            f"(this one nests {deepest} levels)."
        )
    return problems


def _type_text(type_node) -> str:
    if type_node.kind == "non_null_type":
        return f"{_type_text(type_node.type)}!"
    if type_node.kind == "list_type":
        return f"[{_type_text(type_node.type)}]"
    return type_node.name.value


MAX_INPUT_ARRAY = 250


def _oversized(value: Any, path: list[str]) -> list[str] | None:
    """The path of the first input array longer than 250 ("Input arguments that accept an array have a
    maximum size of 250"), or None."""
    if isinstance(value, list):
        if len(value) > MAX_INPUT_ARRAY:
            return path
        items = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return None
    for key, item in items:
        found = _oversized(item, [*path, str(key)])
        if found is not None:
            return found
    return None


def variable_problems(schema: GraphQLSchema, operation: OperationDefinitionNode, variables: dict) -> list[dict]:
    """Variables coerced against their declared input types; Shopify's INVALID_VARIABLE errors."""
    errors = []
    for name, value in variables.items():
        where = _oversized(value, [name])
        if where is not None:
            errors.append(
                {
                    "message": f"The input array size at ${'.'.join(where)} is greater than the maximum allowed of "
                    f"{MAX_INPUT_ARRAY}.",
                    "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"},
                }
            )
    if errors:
        return errors
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        type_ = type_from_ast(schema, definition.type)
        declared = _type_text(definition.type)
        if type_ is None or not is_input_type(type_):
            continue  # reported by validation
        problems: list[dict] = []

        def on_error(error, path, problems=problems):
            explanation = error.message
            match = re.match(r"Expected value of type '(\w+)' not to include unknown field '(\w+)'", explanation)
            if match:
                explanation = f"Field is not defined on {match.group(1)}"
                path = [*path, match.group(2)]
            match = re.match(r"Expected value of type '(\w+)' to include required field '(\w+)'", explanation)
            if match:
                explanation = "Expected value to not be null"
                path = [*path, match.group(2)]
            problems.append({"path": [str(p) for p in path], "explanation": explanation})

        if name not in variables:
            if isinstance(type_, GraphQLNonNull) and definition.default_value is None:
                problems.append({"path": [], "explanation": "Expected value to not be null"})
        else:
            validate_input_value(variables[name], type_, on_error)
        if problems:
            where = " for " + ".".join(problems[0]["path"]) if problems[0]["path"] else ""
            errors.append(
                {
                    "message": f"Variable ${name} of type {declared} was provided invalid value{where} "
                    f"({problems[0]['explanation']})",
                    "locations": [
                        {"line": definition.loc.start_token.line, "column": definition.loc.start_token.column}
                    ]
                    if definition.loc
                    else [],
                    "extensions": {"code": "INVALID_VARIABLE", "value": variables.get(name), "problems": problems},
                }
            )
    return errors


SHIPPING_METHODS = [("Standard", "STANDARD"), ("Express", "EXPRESS"), ("Economy", "ECONOMY")]


def catalog_entry(sku: str) -> dict:
    """One product variant of the shop's catalog: its ids are derived from the SKU (stable across runs)."""
    variant, item = variant_ids(sku)
    number = int(_numeric(variant)) - 40_000_000
    return {
        "sku": sku,
        "variant": variant,
        "item": item,
        "product": f"gid://shopify/Product/{30_000_000 + number}",
        "title": f"Default Title ({sku})",
    }


class ShopifyState(SandboxState):
    """``pickup_rate``: the share of new orders the buyer chose to collect at the store (local pickup);
    drawn from a generator of its own so the other orders stay the same for a given seed.

    ``catalog``: the shop's product variants by SKU, whether or not anyone ordered them (every known
    sandbox SKU; ordered SKUs join it; admin calls add and remove). ``inventory_items``: the available
    quantity last set per inventory item GID at the shop's location."""

    def __init__(self, *, pickup_rate: float = 0.0, **options):
        self.pickup_rate = pickup_rate
        super().__init__(**options)

    def reset(self) -> None:
        from channels.sandbox.base import SKU_CODES, UNKNOWN_SKUS

        super().reset()
        self.pickup_rng = random.Random(self.seed + 1)
        self.catalog: dict[str, dict] = {sku: catalog_entry(sku) for sku in [*SKU_CODES, *UNKNOWN_SKUS]}
        self.inventory_items: dict[str, int] = {}

    def order_id_for(self, number: int) -> str:
        return str(5_000_000_000_000 + number)

    def generate(self, count: int = 1, *, pickup_location: str | None = None, **options) -> list[SandboxOrder]:
        with self.lock:
            made = super().generate(count, **options)
            for order in made:
                chosen = pickup_location
                if chosen is None and self.pickup_rate and self.pickup_rng.random() < self.pickup_rate:
                    chosen = STORE_LOCATION_ID
                order.pickup_location = chosen or ""
                for line in order.lines:
                    self.catalog.setdefault(line.sku, catalog_entry(line.sku))
        return made

    def summary(self) -> dict:
        with self.lock:
            return {**super().summary(), "catalog": len(self.catalog), "inventory_items": dict(self.inventory_items)}


def order_email(order: SandboxOrder) -> str:
    return getattr(order, "email", None) or f"buyer{order.number}@example.com"


def order_shipping(order: SandboxOrder) -> tuple[str, str]:
    return getattr(order, "shipping_method", None) or SHIPPING_METHODS[order.number % len(SHIPPING_METHODS)]


class ShopifySandbox(SandboxApp):
    kind = "shopify"

    def __init__(
        self,
        state: SandboxState | None = None,
        *,
        access_token: str = "shpat_demo",
        webhook_secret: str = "demo-webhook-secret",
        webhook_url: str = "",
        maximum_available: float = 2000.0,
        restore_rate: float = 100.0,
        cancel_delay: float = 0.05,
        refund_unused: bool = True,
        **options,
    ):
        super().__init__(state or ShopifyState(), **options)
        self.access_token = access_token
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.maximum_available = maximum_available
        self.restore_rate = restore_rate
        self.available = maximum_available
        # The least the bucket held after a query was charged (tests: what a client left to the others).
        self.lowest_available = maximum_available
        self.refund_unused = refund_unused
        self.refilled = time.monotonic()
        self.cancel_delay = cancel_delay
        self.bucket_lock = threading.Lock()
        self.fulfillments: dict[str, list[dict]] = {}
        self.bulk_operations: dict[str, dict] = {}
        self.edits: dict[str, dict] = {}  # calculated order id -> the order edit in progress
        self.jobs: dict[str, dict] = {}
        self.idempotency: dict[str, tuple[str, dict]] = {}
        self.state.on_change = self._on_change
        self.webhooks_start()

    def serve(self, *args, **kwargs):
        shopify_schema()  # built before the first request, not during it (about 3 s)
        return super().serve(*args, **kwargs)

    def routes(self):
        return [
            ("POST", "/admin/api/{version}/graphql.json", self.graphql),
            ("GET", "/_sandbox/bulk/{name}", self.bulk_download),
            ("POST", "/_sandbox/webhooks", self.admin_webhooks),
            ("POST", "/_sandbox/catalog", self.admin_catalog),
            ("POST", "/_sandbox/orders/{order_id}/edit", self.admin_edit_order),
        ]

    def server_error(self) -> Response:
        return Response(500, {"errors": "Internal Server Error"})

    def admin_webhooks(self, request: Request) -> Response:
        data = request.json()
        self.webhook_url = data.get("url", self.webhook_url)
        self.webhook_secret = data.get("secret", self.webhook_secret)
        return Response(200, {"url": self.webhook_url})

    def admin_catalog(self, request: Request) -> Response:
        """{"add": [sku, …], "remove": [sku, …]}: products the merchant creates or deletes."""
        data = request.json()
        with self.state.lock:
            for sku in data.get("add") or []:
                self.state.catalog.setdefault(str(sku), catalog_entry(str(sku)))
            for sku in data.get("remove") or []:
                self.state.catalog.pop(str(sku), None)
            return Response(200, {"catalog": len(self.state.catalog)})

    def admin_edit_order(self, request: Request, order_id: str) -> Response:
        """What a merchant changes on an order in the Shopify admin after it was placed (bumps updatedAt):
        {"address": {line1, line2, city, region, postal_code, country_code, phone}, "buyer_name", "email",
        "shipping_method": [title, code], "lines": {line_id: {"sku", "unit_price"}}}."""
        data = request.json()
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                return Response(404, {"errors": "Not Found"})
            if order.status in ("shipped", "cancelled"):
                return Response(422, {"errors": f"order is {order.status}"})
            unknown = set(data.get("address") or {}) - set(order.address)
            if unknown:
                return Response(400, {"errors": f"unknown address fields {sorted(unknown)}"})
            order.address.update({k: str(v) for k, v in (data.get("address") or {}).items()})
            if data.get("buyer_name"):
                order.buyer_name = str(data["buyer_name"])
            if data.get("email"):
                order.email = str(data["email"])
            if data.get("shipping_method"):
                order.shipping_method = tuple(data["shipping_method"])
            lines = {line.line_id: line for line in order.lines}
            for line_id, change in (data.get("lines") or {}).items():
                line = lines.get(str(line_id))
                if line is None:
                    return Response(400, {"errors": f"no line {line_id}"})
                if "sku" in change:
                    line.sku = str(change["sku"])
                    self.state.catalog.setdefault(line.sku, catalog_entry(line.sku))
                if "unit_price" in change:
                    line.unit_price = Decimal(str(change["unit_price"]))
            # An edit always moves updatedAt on (to the second, as Shopify sends it).
            self.state.last_stamp = max(self.state.last_stamp, order.updated_at + timedelta(seconds=1))
            self.state.touch(order)
            return Response(200, {"order_id": order_id, "updatedAt": iso_z(order.updated_at)})

    # --- the endpoint --------------------------------------------------------------------------

    def _throttle_status(self) -> dict:
        return {
            "maximumAvailable": self.maximum_available,
            "currentlyAvailable": int(self.available),
            "restoreRate": self.restore_rate,
        }

    def _take(self, cost: int) -> bool:
        with self.bucket_lock:
            now = time.monotonic()
            self.available = min(self.maximum_available, self.available + (now - self.refilled) * self.restore_rate)
            self.refilled = now
            if self.state.faults.take("throttle_next"):
                self.available = min(self.available, max(cost - self.restore_rate * 0.05, 0))
                return False
            if self.available < cost:
                return False
            self.available -= cost
            self.lowest_available = min(self.lowest_available, self.available)
            return True

    def _refund(self, points: int) -> None:
        """Give back the requested cost a query did not use (Shopify: "when execution is complete, the bucket
        is refunded the difference between the requested cost and the actual cost"), unless this shop is set
        to charge every query its full requested cost (tests whose arithmetic counts requested costs)."""
        if points <= 0 or not self.refund_unused:
            return
        with self.bucket_lock:
            self.available = min(self.maximum_available, self.available + points)

    def graphql(self, request: Request, version: str) -> Response:
        if request.header("x-shopify-access-token") != self.access_token:
            return Response(
                401, {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
            )
        served = version if version in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0]
        headers = {"X-Shopify-API-Version": served, "X-Request-Id": str(uuid.uuid4())}
        try:
            body = request.json()
        except json.JSONDecodeError:
            return Response(400, {"errors": {"query": "Required parameter missing or invalid"}}, headers=headers)
        source = body.get("query") if isinstance(body, dict) else None
        if not isinstance(source, str) or not source.strip():
            return Response(400, {"errors": {"query": "Required parameter missing or invalid"}}, headers=headers)
        variables = body.get("variables") or {}
        schema = shopify_schema()
        try:
            document = parse(source)
        except GraphQLError as exc:
            return Response(200, {"errors": [_error(exc, "PARSE_ERROR")]}, headers=headers)
        problems = validate(schema, document)
        if problems:
            with self.state.lock:
                self.state.contract_violations.append(
                    {"method": "POST", "path": request.path, "violations": [p.message for p in problems]}
                )
            return Response(200, {"errors": [_error(p, validation_code(p.message)) for p in problems]}, headers=headers)
        if not isinstance(variables, dict):
            error = {"message": "Variables must be an object", "extensions": {"code": "INVALID_VARIABLE"}}
            return Response(200, {"errors": [error]}, headers=headers)
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        wanted = body.get("operationName")
        operation = next((o for o in operations if o.name and o.name.value == wanted), None)
        if operation is None and (wanted or len(operations) > 1):
            error = {
                "message": f"No operation named {wanted!r}" if wanted else "An operation name is required",
                "extensions": {"code": "BAD_REQUEST"},
            }
            return Response(200, {"errors": [error]}, headers=headers)
        operation = operation or operations[0]
        invalid = variable_problems(schema, operation, variables)
        if invalid:
            with self.state.lock:
                self.state.contract_violations.append(
                    {"method": "POST", "path": request.path, "violations": [e["message"] for e in invalid]}
                )
            return Response(200, {"errors": invalid}, headers=headers)
        coerced = get_variable_values(schema, operation.variable_definitions or (), variables)
        coerced = coerced.coerced if hasattr(coerced, "coerced") else {}
        sizes = page_size_problems(schema, document, operation, coerced)
        if sizes:
            with self.state.lock:
                self.state.contract_violations.append(
                    {"method": "POST", "path": request.path, "violations": [e["message"] for e in sizes]}
                )
            return Response(200, {"errors": sizes}, headers=headers)
        cost = requested_cost(schema, document, operation, coerced)
        if cost > MAX_QUERY_COST:
            error = {
                "message": f"Query cost is {cost}, which exceeds the single query max cost limit ({MAX_QUERY_COST})."
                "\n\nSee https://shopify.dev/docs/api/usage/rate-limits for more information on how the cost of a "
                "query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk operations should "
                "be used instead.",
                "extensions": {
                    "code": "MAX_COST_EXCEEDED",
                    "cost": cost,
                    "maxCost": MAX_QUERY_COST,
                    "documentation": "https://shopify.dev/api/usage/rate-limits",
                },
            }
            with self.state.lock:
                self.state.contract_violations.append(
                    {"method": "POST", "path": request.path, "violations": [error["message"]]}
                )
            return Response(200, {"errors": [error]}, headers=headers)
        if not self._take(cost):
            throttled = {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {
                            "code": "THROTTLED",
                            "documentation": "https://shopify.dev/api/usage/rate-limits",
                        },
                    }
                ],
                "extensions": {
                    "cost": {
                        "requestedQueryCost": cost,
                        "actualQueryCost": None,
                        "throttleStatus": self._throttle_status(),
                    }
                },
            }
            return Response(200, throttled, headers=headers)
        mutation = operation.operation == OperationType.MUTATION
        result = execute(
            schema,
            document,
            root_value=self._mutation_root() if mutation else self._query_root(),
            variable_values=variables,
            operation_name=body.get("operationName"),
            context_value={"bulk": False},
        )
        out: dict[str, Any] = {}
        if result.errors:
            out["errors"] = [_error(e, "INTERNAL_SERVER_ERROR") for e in result.errors]
        out["data"] = result.data
        actual = cost if mutation else min(actual_cost(schema, document, operation, result.data), cost)
        self._refund(cost - actual)
        out["extensions"] = {
            "cost": {"requestedQueryCost": cost, "actualQueryCost": actual, "throttleStatus": self._throttle_status()}
        }
        return Response(200, out, headers=headers)

    # --- rendering orders ----------------------------------------------------------------------

    def _fulfillment_order(self, order: SandboxOrder) -> dict:
        assigned = order.pickup_location if order.pickup_location in LOCATIONS else LOCATION_ID
        open_total = sum(line.quantity - line.cancelled for line in order.lines)
        remaining = sum(line.remaining for line in order.lines)
        status = "CLOSED" if remaining == 0 else ("IN_PROGRESS" if remaining < open_total else "OPEN")
        if order.status == "cancelled":
            status = "CLOSED"
        items = [
            {
                "id": f"gid://shopify/FulfillmentOrderLineItem/{line.line_id}",
                "totalQuantity": line.quantity - line.cancelled,
                "remainingQuantity": line.remaining,
                "sku": line.sku,
                "lineItem": {"id": f"gid://shopify/LineItem/{line.line_id}"},
                "inventoryItemId": variant_ids(line.sku)[1],
                "requiresShipping": True,
                "productTitle": line.title,
                "warnings": [],
                "financialSummaries": [],
            }
            for line in order.lines
        ]
        return {
            "id": f"gid://shopify/FulfillmentOrder/{order.order_id}",
            "status": status,
            "requestStatus": "UNSUBMITTED",
            "updatedAt": iso_z(order.updated_at),
            "createdAt": iso_z(order.created_at),
            "orderId": f"gid://shopify/Order/{order.order_id}",
            "orderName": f"#{order.number}",
            "deliveryMethod": {
                "id": f"gid://shopify/DeliveryMethod/{order.order_id}",
                "methodType": "PICK_UP" if order.pickup_location else "SHIPPING",
            },
            "assignedLocation": {
                "name": LOCATIONS[assigned],
                "countryCode": "US",
                "location": {"id": assigned, "name": LOCATIONS[assigned]},
            },
            "lineItems": lambda info, first=None, after=None, **_: _connection(
                items, first, after, info.context["bulk"]
            ),
        }

    def render(self, order: SandboxOrder) -> dict:
        currency = order.currency
        lines = []
        for line in order.lines:
            variant, item = variant_ids(line.sku)
            lines.append(
                {
                    "id": f"gid://shopify/LineItem/{line.line_id}",
                    "sku": line.sku,
                    "name": line.title,
                    "title": line.title,
                    "quantity": -2 if order.malformed == "bad_quantity" else line.quantity,
                    "currentQuantity": line.quantity - line.cancelled,
                    "unfulfilledQuantity": line.remaining,
                    "requiresShipping": True,
                    "isGiftCard": False,
                    "originalUnitPriceSet": _money(line.unit_price, currency),
                    "variant": {"id": variant, "sku": line.sku, "inventoryItem": {"id": item, "tracked": True}},
                }
            )
        if order.malformed == "missing_items":
            lines = []
        total = sum(line.unit_price * line.quantity for line in order.lines)
        shipped = sum(line.shipped for line in order.lines)
        owed = sum(line.quantity - line.cancelled for line in order.lines)
        first, _, last = order.buyer_name.partition(" ")
        fulfillment_order = self._fulfillment_order(order)
        shipping = order_shipping(order)
        return {
            "id": f"gid://shopify/Order/{order.order_id}",
            "legacyResourceId": order.order_id,
            "name": f"#{order.number}",
            "createdAt": "31/12/2025 10:00" if order.malformed == "bad_date" else iso_z(order.created_at),
            "updatedAt": iso_z(order.updated_at),
            "processedAt": iso_z(order.created_at),
            "cancelledAt": iso_z(order.updated_at) if order.status == "cancelled" else None,
            "cancelReason": _cancel_reason(order) if order.status == "cancelled" else None,
            "closed": order.status in ("cancelled", "shipped"),
            "displayFinancialStatus": "PAID" if order.paid else "PENDING",
            "displayFulfillmentStatus": "FULFILLED"
            if owed and shipped >= owed
            else ("PARTIALLY_FULFILLED" if shipped else "UNFULFILLED"),
            "currencyCode": currency,
            "email": order_email(order),
            "phone": None,
            "totalPriceSet": _money(total, currency),
            "shippingLine": {"title": shipping[0], "code": shipping[1], "source": "shopify"},
            "shippingAddress": {
                "name": order.buyer_name,
                "firstName": first,
                "lastName": last,
                "company": None,
                "address1": order.address["line1"],
                "address2": order.address["line2"] or None,
                "city": order.address["city"],
                "province": order.address["region"],
                "provinceCode": order.address["region"],
                "zip": order.address["postal_code"],
                "country": "United States",
                "countryCodeV2": order.address["country_code"],
                "phone": order.address["phone"],
            },
            "lineItems": lambda info, first=None, after=None, **_: _connection(
                lines, first, after, info.context["bulk"]
            ),
            "fulfillmentOrders": lambda info, first=None, after=None, **_: _connection(
                [fulfillment_order], first, after, info.context["bulk"]
            ),
            "fulfillments": lambda info, first=None, **_: self.fulfillments.get(order.order_id, [])[: first or None],
            "returns": lambda info, first=None, after=None, **_: _connection(
                self._returns_of(order), first, after, info.context["bulk"]
            ),
            "refunds": lambda info, first=None, **_: self._refunds_of(order)[: first or None],
            "transactions": lambda info, first=None, **_: [self._sale_transaction(order)][: first or None],
        }

    # --- returns and refunds (issue #18): Order.returns, Order.refunds, refundCreate ------------------------

    RETURN_STATUS = {
        "requested": "REQUESTED",
        "approved": "OPEN",
        "shipped": "OPEN",
        "received": "OPEN",
        "closed": "CLOSED",
        "declined": "DECLINED",
    }
    RETURN_REASON = {
        "DEFECTIVE": "DEFECTIVE",
        "WRONG_ITEM": "WRONG_ITEM",
        "NOT_AS_DESCRIBED": "NOT_AS_DESCRIBED",
        "UNWANTED": "UNWANTED",
        "DAMAGED": "DEFECTIVE",
    }

    def _returns_of(self, order: SandboxOrder) -> list[dict]:
        out = []
        for made in self.state.returns.values():
            if made.order_id != order.order_id:
                continue
            number = _numeric_return(made.return_id)
            processed = self._processed_units(made)
            items = [
                {
                    "__typename": "ReturnLineItem",
                    "id": f"gid://shopify/ReturnLineItem/{number}{line_id}",
                    "quantity": units,
                    "processedQuantity": processed.get(line_id, 0),
                    "processableQuantity": units - processed.get(line_id, 0),
                    "unprocessedQuantity": units - processed.get(line_id, 0),
                    "returnReason": self.RETURN_REASON.get(made.reason, "OTHER"),
                    "fulfillmentLineItem": {"lineItem": {"id": f"gid://shopify/LineItem/{line_id}"}},
                }
                for line_id, units in made.lines.items()
            ]
            reverse_items = [
                {
                    "id": f"gid://shopify/ReverseFulfillmentOrderLineItem/{number}{line_id}",
                    "totalQuantity": units,
                    "fulfillmentLineItem": {"lineItem": {"id": f"gid://shopify/LineItem/{line_id}"}},
                    "dispositions": [
                        {"id": f"gid://shopify/ReverseFulfillmentOrderDisposition/{number}{line_id}{i}", **d}
                        for i, d in enumerate(
                            self.state.extra.get("return_dispositions", {}).get((made.return_id, line_id), [])
                        )
                    ],
                }
                for line_id, units in made.lines.items()
            ]
            reverse_order = {
                "id": f"gid://shopify/ReverseFulfillmentOrder/{number}",
                "status": "CLOSED" if made.status == "closed" else "OPEN",
                "lineItems": lambda info, first=None, after=None, _items=reverse_items, **_: _connection(
                    _items, first, after, info.context["bulk"]
                ),
            }
            # Shopify makes the reverse fulfillment order when the return is approved (OPEN).
            reverse_orders = [] if made.status in ("requested", "declined") else [reverse_order]
            refunds = [
                dict(r)
                for r in self._refunds_of(order)
                if r["id"] in self.state.extra.get("return_refunds", {}).get(made.return_id, [])
            ]
            out.append(
                {
                    "id": f"gid://shopify/Return/{number}",
                    "name": f"#{order.number}-R{number}",
                    "status": self.RETURN_STATUS.get(made.status, "OPEN"),
                    "createdAt": iso_z(made.created_at),
                    "closedAt": iso_z(made.updated_at) if made.status == "closed" else None,
                    "totalQuantity": sum(made.lines.values()),
                    "order": lambda info, _order=order: self.render(_order),
                    "returnLineItems": lambda info, first=None, after=None, _items=items, **_: _connection(
                        _items, first, after, info.context["bulk"]
                    ),
                    "reverseFulfillmentOrders": lambda info, first=None, after=None, _ro=reverse_orders, **_: (
                        _connection(_ro, first, after, info.context["bulk"])
                    ),
                    "refunds": lambda info, first=None, after=None, _refunds=refunds, **_: _connection(
                        _refunds, first, after, info.context["bulk"]
                    ),
                }
            )
        return out

    def _processed_units(self, made) -> dict[str, int]:
        return self.state.extra.get("return_processed", {}).get(made.return_id, {})

    def _sandbox_return(self, gid: str):
        if not isinstance(gid, str) or not gid.startswith("gid://shopify/Return/"):
            return None
        return next(
            (r for r in self.state.returns.values() if _numeric_return(r.return_id) == gid.rsplit("/", 1)[-1]), None
        )

    def _return_by_gid(self, gid: str) -> dict | None:
        with self.state.lock:
            made = self._sandbox_return(gid)
            if made is None:
                return None
            order = self.state.orders[made.order_id]
            return next(r for r in self._returns_of(order) if r["id"] == gid)

    def _return_decide(self, input: dict, status: str) -> dict:
        with self.state.lock:
            made = self._sandbox_return(input.get("id"))
            if made is None:
                return {
                    "return": None,
                    "userErrors": [{"field": ["id"], "message": "Return does not exist.", "code": "NOT_FOUND"}],
                }
            if made.status != "requested":
                error = {
                    "field": ["id"],
                    "message": "Return is not approvable. "
                    "Only returns with status REQUESTED can be approved or declined.",
                    "code": "INVALID_STATE",
                }
                return {"return": None, "userErrors": [error]}
            self.state.return_advance(made, status)
            self.state.extra.setdefault("return_decisions", []).append(
                {"return_id": made.return_id, "status": status, "input": input}
            )
            return {"return": self._return_by_gid(input["id"]), "userErrors": []}

    def _return_process(self, info, input):
        """returnProcess (no idempotency key: Shopify documents none for it). As the schema's descriptions
        say: the quantities confirm return line items previously created on the return, the return must be
        OPEN, the refund's transactions refund a SALE or CAPTURE of the order and not more than is left to
        refund, and the return is CLOSED once every line is processed. Dispositions name the return's
        reverse fulfillment order line items; RESTOCKED needs a location."""

        def refused(field: list[str], message: str, code: str = "INVALID") -> dict:
            return {"return": None, "userErrors": [{"field": field, "message": message, "code": code}]}

        with self.state.lock:
            made = self._sandbox_return(input.get("returnId"))
            if made is None:
                return refused(["input", "returnId"], "Return does not exist.", "NOT_FOUND")
            if self.RETURN_STATUS.get(made.status) != "OPEN":
                return refused(
                    ["input", "returnId"],
                    f"Return is not processable. Only returns with status OPEN can be processed "
                    f"(status {self.RETURN_STATUS.get(made.status, made.status.upper())}).",
                    "INVALID_STATE",
                )
            order = self.state.orders[made.order_id]
            number = _numeric_return(made.return_id)
            items = {f"gid://shopify/ReturnLineItem/{number}{line_id}": line_id for line_id in made.lines}
            reverse_items = {
                f"gid://shopify/ReverseFulfillmentOrderLineItem/{number}{line_id}": line_id for line_id in made.lines
            }
            processed = dict(self._processed_units(made))
            wanted: dict[str, int] = {}
            dispositions: list[tuple[str, dict]] = []
            if input.get("exchangeLineItems"):
                return refused(["input", "exchangeLineItems"], "Return has no exchange line items.", "NOT_FOUND")
            for index, item in enumerate(input.get("returnLineItems") or []):
                path = ["input", "returnLineItems", str(index)]
                line_id = items.get(item["id"])
                if line_id is None:
                    return refused([*path, "id"], "Return line item does not exist on this return.", "NOT_FOUND")
                wanted[line_id] = wanted.get(line_id, 0) + item["quantity"]
                room = made.lines[line_id] - processed.get(line_id, 0)
                if item["quantity"] < 1 or wanted[line_id] > room:
                    return refused(
                        [*path, "quantity"],
                        f"Quantity must be between 1 and the processable quantity ({room}).",
                        "INVALID",
                    )
                disposed = 0
                for d_index, dispose in enumerate(item.get("dispositions") or []):
                    d_path = [*path, "dispositions", str(d_index)]
                    if reverse_items.get(dispose["reverseFulfillmentOrderLineItemId"]) != line_id:
                        return refused(
                            [*d_path, "reverseFulfillmentOrderLineItemId"],
                            "Reverse fulfillment order line item does not belong to this return line item.",
                            "INVALID",
                        )
                    if dispose["dispositionType"] == "RESTOCKED" and not dispose.get("locationId"):
                        return refused([*d_path, "locationId"], "Location is required to restock.", "BLANK")
                    if dispose["quantity"] < 1:
                        return refused([*d_path, "quantity"], "Quantity must be greater than 0.", "GREATER_THAN")
                    disposed += dispose["quantity"]
                    dispositions.append((line_id, dispose))
                if disposed > item["quantity"]:
                    return refused(
                        [*path, "dispositions"], "Disposed quantity exceeds the processed quantity.", "INVALID"
                    )
            issue = (input.get("financialTransfer") or {}).get("issueRefund")
            amount = Decimal(0)
            if issue:
                sale = self._sale_transaction(order)
                for t_index, transaction in enumerate(issue.get("orderTransactions") or []):
                    t_path = ["input", "financialTransfer", "issueRefund", "orderTransactions", str(t_index)]
                    if transaction["parentId"] != sale["id"]:
                        return refused(
                            [*t_path, "parentId"],
                            "The parent transaction must be a CAPTURE or SALE of this order.",
                            "INVALID",
                        )
                    money = transaction["transactionAmount"]
                    if money["currencyCode"] != order.currency:
                        return refused([*t_path, "transactionAmount"], "Currency does not match the order.")
                    amount += Decimal(str(money["amount"]))
                paid = sum(line.unit_price * line.quantity for line in order.lines)
                done = sum(Decimal(r["totalRefundedSet"]["shopMoney"]["amount"]) for r in self._refunds_of(order))
                if amount > paid - done and not issue.get("allowOverRefunding"):
                    return refused(
                        ["input", "financialTransfer", "issueRefund", "orderTransactions"],
                        "Refund amount exceeds the refundable amount.",
                        "INVALID",
                    )
            for line_id, units in wanted.items():
                processed[line_id] = processed.get(line_id, 0) + units
            self.state.extra.setdefault("return_processed", {})[made.return_id] = processed
            stored = self.state.extra.setdefault("return_dispositions", {})
            for line_id, dispose in dispositions:
                stored.setdefault((made.return_id, line_id), []).append(
                    {"type": dispose["dispositionType"], "quantity": dispose["quantity"]}
                )
            refund_id = None
            if issue:
                log = self.state.extra.setdefault("refund_log", [])
                refund_id = f"gid://shopify/Refund/{900_000 + len(log) + 1}"
                refund = {
                    "id": refund_id,
                    "legacyResourceId": refund_id.rsplit("/", 1)[-1],
                    "note": input.get("note"),
                    "createdAt": iso_z(self.state.stamp()),
                    "totalRefundedSet": _money(amount, order.currency),
                }
                log.append(
                    {"order_id": order.order_id, "input": input, "refund_id": refund_id, "return_id": made.return_id}
                )
                self.state.extra.setdefault("refunds", {}).setdefault(order.order_id, []).append(refund)
                self.state.extra.setdefault("return_refunds", {}).setdefault(made.return_id, []).append(refund_id)
                refunded_units = self.state.extra.setdefault("refunded_units", {})
                for line_id, units in wanted.items():
                    key = f"gid://shopify/LineItem/{line_id}"
                    refunded_units[key] = refunded_units.get(key, 0) + units
            self.state.extra.setdefault("return_process_log", []).append(
                {"return_id": made.return_id, "input": input, "refund_id": refund_id}
            )
            if all(processed.get(line_id, 0) >= units for line_id, units in made.lines.items()):
                self.state.return_advance(made, "closed")
            else:
                self.state.touch(order, "refund" if issue else "return")
            return {"return": self._return_by_gid(input["returnId"]), "userErrors": []}

    def _sale_transaction(self, order: SandboxOrder) -> dict:
        total = sum(line.unit_price * line.quantity for line in order.lines)
        return {
            "id": f"gid://shopify/OrderTransaction/{order.order_id}1",
            "kind": "SALE",
            "status": "SUCCESS",
            "gateway": "shopify_payments",
            "amountSet": _money(total, order.currency),
        }

    def _refunds_of(self, order: SandboxOrder) -> list[dict]:
        return [dict(r) for r in self.state.extra.get("refunds", {}).get(order.order_id, [])]

    def _refund_create(self, info, input):
        directive = shopify_schema().get_directive("idempotent")
        values = get_directive_values(directive, info.field_nodes[0], info.variable_values)
        if not values or not str(values.get("key", "")).strip():
            raise GraphQLError(
                "The @idempotent directive is required for this mutation but was not provided.",
                extensions={"code": "BAD_REQUEST"},
            )
        key = values["key"]
        fingerprint = hashlib.sha256(json.dumps(input, sort_keys=True, default=str).encode()).hexdigest()
        with self.state.lock:
            if key in self.idempotency:
                seen, result = self.idempotency[key]
                if seen != fingerprint:
                    error = {
                        "field": ["input"],
                        "message": "The idempotency key was already used with different parameters.",
                    }
                    return {"refund": None, "userErrors": [error]}
                return result
            order = self._find(input.get("orderId"), "Order")
            if order is None:
                return {"refund": None, "userErrors": [{"field": ["orderId"], "message": "Order does not exist"}]}
            lines = {f"gid://shopify/LineItem/{line.line_id}": line for line in order.lines}
            refunded_units = self.state.extra.setdefault("refunded_units", {})
            for index, item in enumerate(input.get("refundLineItems") or []):
                line = lines.get(item["lineItemId"])
                taken = refunded_units.get(item["lineItemId"], 0)
                if line is None or item["quantity"] < 1 or item["quantity"] > line.quantity - line.cancelled - taken:
                    field = ["refundLineItems", str(index), "quantity" if line else "lineItemId"]
                    return {
                        "refund": None,
                        "userErrors": [
                            {"field": field, "message": "Quantity cannot refund more items than were purchased"}
                        ],
                    }
            paid = sum(line.unit_price * line.quantity for line in order.lines)
            done = sum(Decimal(r["totalRefundedSet"]["shopMoney"]["amount"]) for r in self._refunds_of(order))
            amount = sum((Decimal(str(t["amount"])) for t in input.get("transactions") or []), Decimal(0))
            for t in input.get("transactions") or []:
                if t["kind"] != "REFUND" or t["orderId"] != input["orderId"]:
                    return {
                        "refund": None,
                        "userErrors": [
                            {
                                "field": ["transactions"],
                                "message": "A refund transaction must be of kind REFUND on this order",
                            }
                        ],
                    }
            if amount > paid - done and not input.get("allowOverRefunding"):
                return {
                    "refund": None,
                    "userErrors": [
                        {"field": ["transactions"], "message": "Refund amount exceeds the refundable amount"}
                    ],
                }
            for item in input.get("refundLineItems") or []:
                refunded_units[item["lineItemId"]] = refunded_units.get(item["lineItemId"], 0) + item["quantity"]
            log = self.state.extra.setdefault("refund_log", [])
            refund = {
                "id": f"gid://shopify/Refund/{900_000 + len(log) + 1}",
                "legacyResourceId": str(900_000 + len(log) + 1),
                "note": input.get("note"),
                "createdAt": iso_z(self.state.stamp()),
                "totalRefundedSet": _money(amount, order.currency),
            }
            log.append({"order_id": order.order_id, "input": input, "refund_id": refund["id"], "key": key})
            self.state.extra.setdefault("refunds", {}).setdefault(order.order_id, []).append(refund)
            self.state.touch(order, "refund")
            result = {"refund": refund, "userErrors": []}
            self.idempotency[key] = (fingerprint, result)
            return result

    def _find(self, gid: str, kind: str) -> SandboxOrder | None:
        prefix = f"gid://shopify/{kind}/"
        if not isinstance(gid, str) or not gid.startswith(prefix):
            return None
        return self.state.orders.get(_numeric(gid))

    # --- query root ----------------------------------------------------------------------------

    def _query_root(self) -> dict:
        return {
            "orders": self._orders,
            "order": lambda info, id: (lambda o: self.render(o) if o else None)(self._find(id, "Order")),
            "bulkOperation": lambda info, id: self._bulk_status(id),
            "job": lambda info, id: self.jobs.get(id),
            "productVariants": self._product_variants,
            "return": lambda info, id: self._return_by_gid(id),
            "inventoryItems": self._inventory_items,  # reconciliation reads
            "fulfillmentOrder": lambda info, id: (lambda o: self._fulfillment_order(o) if o else None)(
                self._find(id, "FulfillmentOrder")
            ),
            "location": lambda info, id: {"id": id, "name": LOCATIONS[id]} if id in LOCATIONS else None,
            "shop": {
                "name": "Waybill Sandbox",
                "currencyCode": "USD",
                "myshopifyDomain": "waybill-sandbox.myshopify.com",
            },
        }

    # --- drift behind the sync's back (reconciliation) -------------------------------------------

    negative_stock = True  # Shopify's available goes below 0 when a shop oversells

    def drift_stock(self, sku: str, quantity: int) -> None:
        self.state.inventory[sku] = quantity
        self.state.inventory_items[variant_ids(sku)[1]] = quantity

    def drift_forget_shipments(self, order: SandboxOrder) -> None:
        self.fulfillments.pop(order.order_id, None)

    # --- end of drift ------------------------------------------------------------------------------

    # --- reconciliation reads: inventory items and their levels -------------------------------

    def _inventory_items(self, info, first=None, after=None, query=None, **_):
        """The catalog's inventory items matching the search, each with its level at a location: the
        ``available`` quantity last set there (the shop's warehouse only; other locations stock nothing)."""
        terms = search_terms(query or "")
        with self.state.lock:
            entries = sorted(self.state.catalog.values(), key=lambda e: int(_numeric(e["item"])))
            chosen = [e for e in entries if any(all(_term_matches(e, t) for t in group) for group in terms)]
            nodes = [self._inventory_item(e) for e in chosen]
        return _connection(nodes, first, after, info.context["bulk"])

    def _inventory_item(self, entry: dict) -> dict:
        item = entry["item"]

        def level(info, locationId, includeInactive=False):
            if locationId != LOCATION_ID:
                return None
            with self.state.lock:
                available = self.state.inventory_items.get(item, self.state.inventory.get(entry["sku"], 0))
            return {
                "id": f"gid://shopify/InventoryLevel/{_numeric(item)}?inventory_item_id={_numeric(item)}",
                "isActive": True,
                "quantities": lambda info, names: [
                    {"id": f"gid://shopify/InventoryQuantity/{_numeric(item)}-{n}", "name": n, "quantity": available}
                    for n in names
                    if n == "available"
                ],
            }

        return {"id": item, "sku": entry["sku"], "tracked": True, "inventoryLevel": level}

    # --- end of reconciliation reads ---------------------------------------------------------

    def _product_variants(self, info, first=None, after=None, query=None, **_):
        terms = search_terms(query or "")
        with self.state.lock:
            entries = sorted(self.state.catalog.values(), key=lambda e: int(_numeric(e["variant"])))
            chosen = [e for e in entries if any(all(_term_matches(e, t) for t in group) for group in terms)]
            nodes = [
                {
                    "id": e["variant"],
                    "sku": e["sku"],
                    "title": e["title"],
                    "displayName": e["title"],
                    "inventoryItem": {"id": e["item"], "sku": e["sku"], "tracked": True},
                    "product": {"id": e["product"], "title": e["title"]},
                }
                for e in chosen
            ]
        return _connection(nodes, first, after, info.context["bulk"])

    def _orders(
        self,
        info,
        first=None,
        after=None,
        last=None,
        before=None,
        reverse=False,
        sortKey="PROCESSED_AT",
        query=None,
        **_,
    ):
        bulk = info.context["bulk"]
        if first is None and not bulk:
            raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
        with self.state.lock:
            rows = list(self.state.orders.values())
            for op, value in UPDATED_AT_FILTER.findall(query or ""):
                bound = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if bound.tzinfo is None:
                    bound = bound.replace(tzinfo=UTC)
                compare = {
                    ">=": lambda a, b=bound: a >= b,
                    ">": lambda a, b=bound: a > b,
                    "<=": lambda a, b=bound: a <= b,
                    "<": lambda a, b=bound: a < b,
                }[op]
                rows = [o for o in rows if compare(o.updated_at)]
            key = {
                "UPDATED_AT": lambda o: (o.updated_at, o.number),
                "CREATED_AT": lambda o: (o.created_at, o.number),
            }.get(sortKey, lambda o: (o.created_at, o.number))
            rows.sort(key=key, reverse=bool(reverse))
            if after:
                mark = _unb64(after)
                position = (datetime.fromisoformat(mark["last_value"]), int(mark["last_id"]))
                rows = [o for o in rows if (key(o) < position if reverse else key(o) > position)]
            chosen = rows if first is None else rows[:first]
            if first is not None and not 0 <= first <= 250:
                raise GraphQLError("first cannot exceed 250.", extensions={"code": "BAD_REQUEST"})
            if self.state.faults.take("duplicate_next") and first is not None and len(chosen) > 2:
                chosen = chosen[:-2]  # the page ends early: its last orders come again on the next page
            nodes = [self.render(o) for o in chosen]
            cursors = [_b64({"last_id": o.number, "last_value": key(o)[0].isoformat()}) for o in chosen]
        has_next = len(rows) > len(chosen)
        return {
            "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, nodes, strict=True)],
            "nodes": nodes,
            "pageInfo": {
                "hasNextPage": has_next,
                "hasPreviousPage": bool(after),
                "startCursor": cursors[0] if cursors else None,
                "endCursor": cursors[-1] if cursors else None,
            },
        }

    # --- mutations -----------------------------------------------------------------------------

    def _mutation_root(self) -> dict:
        return {
            "fulfillmentCreate": self._fulfillment_create,
            "orderCancel": self._order_cancel,
            "fulfillmentOrderLineItemsPreparedForPickup": self._prepared_for_pickup,
            "orderEditBegin": self._order_edit_begin,
            "orderEditSetQuantity": self._order_edit_set_quantity,
            "orderEditCommit": self._order_edit_commit,
            "inventorySetQuantities": self._inventory_set,
            "refundCreate": self._refund_create,
            "returnProcess": self._return_process,
            "returnApproveRequest": lambda info, input: self._return_decide(input, "approved"),
            "returnDeclineRequest": lambda info, input: self._return_decide(input, "declined"),
            "bulkOperationRunQuery": self._bulk_run,
        }

    def _fulfillment_create(self, info, fulfillment, message=None):
        groups = fulfillment.get("lineItemsByFulfillmentOrder") or []
        if not groups:
            return {
                "fulfillment": None,
                "userErrors": [{"field": ["fulfillment"], "message": "Fulfillment order does not exist."}],
            }
        with self.state.lock:
            order = self._find(groups[0]["fulfillmentOrderId"], "FulfillmentOrder")
            if order is None or any(g["fulfillmentOrderId"] != groups[0]["fulfillmentOrderId"] for g in groups):
                return {
                    "fulfillment": None,
                    "userErrors": [{"field": ["fulfillment"], "message": "Fulfillment order does not exist."}],
                }
            if order.status == "cancelled" or all(line.remaining == 0 for line in order.lines):
                return {
                    "fulfillment": None,
                    "userErrors": [
                        {
                            "field": ["fulfillment"],
                            "message": f"Fulfillment order {order.order_id} has an unfulfillable status= closed.",
                        }
                    ],
                }
            lines = {f"gid://shopify/FulfillmentOrderLineItem/{line.line_id}": line for line in order.lines}
            wanted = groups[0].get("fulfillmentOrderLineItems")
            plan = (
                [(lines.get(i["id"]), i["quantity"]) for i in wanted]
                if wanted
                else [(line, line.remaining) for line in order.lines if line.remaining]
            )
            for index, (line, quantity) in enumerate(plan):
                if quantity <= 0:
                    field = [
                        "fulfillment",
                        "lineItemsByFulfillmentOrder",
                        "0",
                        "fulfillmentOrderLineItems",
                        str(index),
                        "quantity",
                    ]
                    return {
                        "fulfillment": None,
                        "userErrors": [{"field": field, "message": "Quantity must be greater than 0"}],
                    }
                if line is None or quantity > line.remaining:
                    return {
                        "fulfillment": None,
                        "userErrors": [
                            {
                                "field": ["fulfillment"],
                                "message": "Invalid fulfillment order line item quantity requested.",
                            }
                        ],
                    }
            for line, quantity in plan:
                line.shipped += quantity
            tracking = fulfillment.get("trackingInfo") or {}
            record = {
                "id": f"gid://shopify/Fulfillment/{uuid.uuid4().int % 10**13}",
                "name": f"#{order.number}-F{len(self.fulfillments.get(order.order_id, [])) + 1}",
                "status": "SUCCESS",
                "displayStatus": "FULFILLED",
                "createdAt": iso_z(utcnow()),
                "updatedAt": iso_z(utcnow()),
                "trackingInfo": [
                    {"company": tracking.get("company"), "number": tracking.get("number"), "url": tracking.get("url")}
                ],
            }
            self.fulfillments.setdefault(order.order_id, []).append(record)
            order.recompute()
            self.state.touch(order, "update")
            self.state.shipments.append(
                {
                    "order_id": order.order_id,
                    "tracking": tracking,
                    "lines": {line.line_id: quantity for line, quantity in plan},
                    "notify_customer": fulfillment.get("notifyCustomer", False),
                }
            )
        return {"fulfillment": record, "userErrors": []}

    def _order_cancel(
        self, info, orderId, reason, restock, refundMethod=None, notifyCustomer=False, staffNote=None, refund=None
    ):
        if refund is not None and refundMethod is not None:
            error = {
                "field": ["refund"],
                "message": "Only one of the arguments `refund` or `refund_method` is allowed.",
                "code": "INVALID",
            }
            return {"job": None, "orderCancelUserErrors": [error], "userErrors": [error]}
        if staffNote and len(staffNote) > 255:
            error = {
                "field": ["staffNote"],
                "message": "Staff note is too long. Maximum length is 255 characters.",
                "code": "INVALID",
            }
            return {"job": None, "orderCancelUserErrors": [error], "userErrors": [error]}
        with self.state.lock:
            order = self._find(orderId, "Order")
            if order is None:
                error = {"field": ["orderId"], "message": "Order does not exist", "code": "NOT_FOUND"}
                return {"job": None, "orderCancelUserErrors": [error], "userErrors": [error]}
            if order.status == "cancelled":
                error = {
                    "field": ["orderId"],
                    "message": "Cannot cancel an order that has already been canceled",
                    "code": "INVALID",
                }
                return {"job": None, "orderCancelUserErrors": [error], "userErrors": [error]}
            if any(line.shipped for line in order.lines):
                error = {
                    "field": ["orderId"],
                    "message": "Cannot cancel an order with outstanding fulfillments",
                    "code": "INVALID",
                }
                return {"job": None, "orderCancelUserErrors": [error], "userErrors": [error]}
        job_id = f"gid://shopify/Job/{uuid.uuid4()}"
        self.jobs[job_id] = {"id": job_id, "done": False}

        def run():
            with self.state.lock:
                if order.status != "cancelled":
                    self.state.cancel(order, {v: k for k, v in CANCEL_REASONS.items()}.get(reason, "GeneralAdjustment"))
                    self.state.cancellations.append({"order_id": order.order_id, "reason": reason, "restock": restock})
            self.jobs[job_id]["done"] = True

        threading.Timer(self.cancel_delay, run).start()
        return {"job": {"id": job_id, "done": False}, "orderCancelUserErrors": [], "userErrors": []}

    def _prepared_for_pickup(self, info, input):
        errors, ready = [], []
        with self.state.lock:
            for group in input.get("lineItemsByFulfillmentOrder") or []:
                order = self._find(group["fulfillmentOrderId"], "FulfillmentOrder")
                if order is None:
                    errors.append({"field": ["input"], "message": "Fulfillment order does not exist.", "code": None})
                elif not order.pickup_location or order.status == "cancelled":
                    errors.append(
                        {"field": ["input"], "message": "Fulfillment order is not a local pickup.", "code": None}
                    )
                else:
                    ready.append(order)
            if errors:
                return {"userErrors": errors}
            for order in ready:
                self.state.extra.setdefault("prepared_for_pickup", []).append(order.order_id)
                self.state.touch(order)
        return {"userErrors": []}

    # --- order editing: begin, stage quantities, commit -------------------------------------------

    def _calculated(self, calc_id: str) -> dict:
        edit = self.edits[calc_id]
        order = edit["order"]
        items = [
            {
                "id": f"gid://shopify/CalculatedLineItem/{line.line_id}",
                "sku": line.sku,
                "title": line.title,
                "quantity": edit["quantities"].get(line.line_id, line.quantity - line.cancelled),
                "editableQuantity": line.remaining,
                "editableQuantityBeforeChanges": line.remaining,
            }
            for line in order.lines
            if line.quantity - line.cancelled > 0
        ]
        return {
            "id": calc_id,
            "committed": edit["committed"],
            "lineItems": lambda info, first=None, after=None, **_: _connection(items, first, after, False),
        }

    @staticmethod
    def _edit_error(field_name: str, message: str, **empty) -> dict:
        return {**dict.fromkeys(empty, None), "userErrors": [{"field": [field_name], "message": message}]}

    def _order_edit_begin(self, info, id):
        with self.state.lock:
            order = self._find(id, "Order")
            if order is None:
                return self._edit_error("id", "The order does not exist.", calculatedOrder=1, orderEditSession=1)
            if order.status == "cancelled":
                return self._edit_error("id", "The order is canceled and cannot be edited.", calculatedOrder=1)
            calc_id = f"gid://shopify/CalculatedOrder/{uuid.uuid4().int % 10**12}"
            self.edits[calc_id] = {"order": order, "quantities": {}, "committed": False}
            return {"calculatedOrder": self._calculated(calc_id), "orderEditSession": None, "userErrors": []}

    def _order_edit_set_quantity(self, info, id, lineItemId, quantity, restock=None, locationId=None):
        with self.state.lock:
            edit = self.edits.get(id)
            if edit is None or edit["committed"]:
                return self._edit_error("id", "No such calculated order, or it was committed.", calculatedOrder=1)
            lines = {f"gid://shopify/CalculatedLineItem/{line.line_id}": line for line in edit["order"].lines}
            line = lines.get(lineItemId)
            if line is None:
                return self._edit_error("lineItemId", "The line item does not exist.", calculatedOrder=1)
            if quantity < 0 or quantity < line.shipped:
                return self._edit_error(
                    "quantity", f"The quantity cannot be less than the fulfilled quantity ({line.shipped}).",
                    calculatedOrder=1,
                )  # fmt: skip
            if quantity > line.quantity - line.cancelled:
                return self._edit_error("quantity", "Adding units is not supported here.", calculatedOrder=1)
            edit["quantities"][line.line_id] = quantity
            return {
                "calculatedLineItem": {"id": lineItemId, "quantity": quantity},
                "calculatedOrder": self._calculated(id),
                "orderEditSession": None,
                "userErrors": [],
            }

    def _order_edit_commit(self, info, id, notifyCustomer=None, staffNote=None):
        with self.state.lock:
            edit = self.edits.get(id)
            if edit is None or edit["committed"]:
                return self._edit_error("id", "No such calculated order, or it was committed.", order=1)
            order = edit["order"]
            for line in order.lines:
                if line.line_id in edit["quantities"]:
                    line.cancelled += line.quantity - line.cancelled - edit["quantities"][line.line_id]
            edit["committed"] = True
            self.state.cancellations.append(
                {"order_id": order.order_id, "edit": dict(edit["quantities"]), "staff_note": staffNote}
            )
            order.recompute()
            self.state.touch(order)
            return {"order": self.render(order), "successMessages": ["Order updated"], "userErrors": []}

    def _inventory_set(self, info, input):
        directive = shopify_schema().get_directive("idempotent")
        values = get_directive_values(directive, info.field_nodes[0], info.variable_values)
        if not values or not str(values.get("key", "")).strip():
            raise GraphQLError(
                "The @idempotent directive is required for this mutation but was not provided.",
                extensions={"code": "BAD_REQUEST"},
            )
        key = values["key"]
        fingerprint = hashlib.sha256(json.dumps(input, sort_keys=True, default=str).encode()).hexdigest()
        with self.state.lock:
            if key in self.idempotency:
                seen, result = self.idempotency[key]
                if seen != fingerprint:
                    error = {
                        "field": ["input"],
                        "message": "The idempotency key was already used with different parameters.",
                        "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                    }
                    return {"inventoryAdjustmentGroup": None, "userErrors": [error]}
                return result
            for quantity in input["quantities"]:
                if "changeFromQuantity" not in quantity:
                    raise GraphQLError(
                        "InventoryQuantityInput must include the following argument: changeFromQuantity.",
                        extensions={"code": "INVALID_FIELD_ARGUMENTS"},
                    )
            if input["name"] not in ("available", "on_hand"):
                return {
                    "inventoryAdjustmentGroup": None,
                    "userErrors": [{"field": ["input", "name"], "message": "Invalid name", "code": "INVALID_NAME"}],
                }
            by_item = {entry["item"]: sku for sku, entry in self.state.catalog.items()}
            changes = []
            errors = []
            seen: set[tuple[str, str]] = set()
            for index, quantity in enumerate(input["quantities"]):
                sku = by_item.get(quantity["inventoryItemId"])
                field = ["input", "quantities", str(index)]
                pair = (quantity["inventoryItemId"], quantity["locationId"])
                if pair in seen:
                    errors.append(
                        {
                            "field": [*field, "inventoryItemId"],
                            "message": "The combination of inventoryItemId and locationId must be unique.",
                            "code": "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                        }
                    )
                    continue
                seen.add(pair)
                if sku is None:
                    errors.append(
                        {
                            "field": [*field, "inventoryItemId"],
                            "message": "The specified inventory item could not be found.",
                            "code": "INVALID_INVENTORY_ITEM",
                        }
                    )
                elif quantity["locationId"] != LOCATION_ID:
                    errors.append(
                        {
                            "field": [*field, "locationId"],
                            "message": "The specified location could not be found.",
                            "code": "INVALID_LOCATION",
                        }
                    )
                elif quantity["changeFromQuantity"] is not None and quantity[
                    "changeFromQuantity"
                ] != self.state.inventory.get(sku, 0):
                    errors.append(
                        {
                            "field": [*field, "changeFromQuantity"],
                            "message": "The current quantity does not match changeFromQuantity.",
                            "code": "CHANGE_FROM_QUANTITY_STALE",
                        }
                    )
                elif input["name"] == "on_hand" and quantity["quantity"] < 0:
                    errors.append(
                        {
                            "field": [*field, "quantity"],
                            "message": "The quantity can't be negative.",
                            "code": "INVALID_QUANTITY_NEGATIVE",
                        }
                    )
                else:
                    changes.append((sku, quantity))
            if errors:
                return {"inventoryAdjustmentGroup": None, "userErrors": errors}
            out = []
            for sku, quantity in changes:
                before = self.state.inventory.get(sku, 0)
                self.state.inventory[sku] = quantity["quantity"]
                self.state.inventory_items[quantity["inventoryItemId"]] = quantity["quantity"]
                self.state.inventory_log.append(
                    {"sku": sku, "quantity": quantity["quantity"], "at": time.time(), "key": key}
                )
                out.append(
                    {
                        "name": input["name"],
                        "delta": quantity["quantity"] - before,
                        "quantityAfterChange": None,
                        "item": {"id": quantity["inventoryItemId"]},
                        "location": {"id": LOCATION_ID, "name": LOCATION_NAME},
                    }
                )
            result = {
                "inventoryAdjustmentGroup": {
                    "id": f"gid://shopify/InventoryAdjustmentGroup/{uuid.uuid4().int % 10**13}",
                    "createdAt": iso_z(utcnow()),
                    "reason": input["reason"],
                    "referenceDocumentUri": input.get("referenceDocumentUri"),
                    "changes": out,
                },
                "userErrors": [],
            }
            self.idempotency[key] = (fingerprint, result)
            return result

    # --- bulk operations -----------------------------------------------------------------------

    def _bulk_run(self, info, query, groupObjects=False):
        try:
            document = parse(query)
        except GraphQLError as exc:
            return {
                "bulkOperation": None,
                "userErrors": [
                    {"field": ["query"], "message": f"Invalid bulk query: {exc.message}", "code": "INVALID"}
                ],
            }
        problems = [p.message for p in validate(shopify_schema(), document)]
        problems = problems or bulk_query_problems(shopify_schema(), document)
        if problems:
            with self.state.lock:
                self.state.contract_violations.append(
                    {"method": "POST", "path": "bulkOperationRunQuery(query:)", "violations": problems}
                )
            return {
                "bulkOperation": None,
                "userErrors": [{"field": ["query"], "message": message, "code": "INVALID"} for message in problems],
            }
        running = [b for b in self.bulk_operations.values() if b["status"] in ("CREATED", "RUNNING")]
        if len(running) >= 5:
            return {
                "bulkOperation": None,
                "userErrors": [
                    {
                        "field": None,
                        "message": "A bulk query operation for this app and shop is already in progress",
                        "code": "OPERATION_IN_PROGRESS",
                    }
                ],
            }
        bulk_id = f"gid://shopify/BulkOperation/{len(self.bulk_operations) + 7_000_000_000_000}"
        self.bulk_operations[bulk_id] = {
            "document": document,
            "status": "CREATED",
            "createdAt": iso_z(utcnow()),
            "query": query,
        }
        return {"bulkOperation": self._bulk_status(bulk_id), "userErrors": []}

    def _bulk_status(self, bulk_id: str) -> dict | None:
        bulk = self.bulk_operations.get(bulk_id)
        if bulk is None:
            return None
        if bulk["status"] == "CREATED":
            bulk["status"] = "RUNNING"
        elif bulk["status"] == "RUNNING":
            result = execute(
                shopify_schema(), bulk["document"], root_value=self._query_root(), context_value={"bulk": True}
            )
            rows: list[dict] = []
            for value in (result.data or {}).values():
                _flatten(value, None, rows)
            bulk["jsonl"] = "".join(json.dumps(row).replace("/", "\\/") + "\n" for row in rows).encode()
            bulk["objectCount"] = len(rows)
            bulk["rootObjectCount"] = sum(1 for row in rows if "__parentId" not in row)
            bulk["status"] = "COMPLETED"
            bulk["completedAt"] = iso_z(utcnow())
        done = bulk["status"] == "COMPLETED"
        return {
            "id": bulk_id,
            "status": bulk["status"],
            "type": "QUERY",
            "errorCode": None,
            "createdAt": bulk["createdAt"],
            "completedAt": bulk.get("completedAt"),
            "objectCount": str(bulk.get("objectCount", 0)),
            "rootObjectCount": str(bulk.get("rootObjectCount", 0)),
            "fileSize": str(len(bulk.get("jsonl", b""))) if done else None,
            "url": f"{self.base_url}/_sandbox/bulk/{_numeric(bulk_id)}.jsonl" if done else None,
            "partialDataUrl": None,
            "query": bulk["query"],
        }

    def bulk_download(self, request: Request, name: str) -> Response:
        bulk = self.bulk_operations.get(f"gid://shopify/BulkOperation/{name.removesuffix('.jsonl')}")
        if bulk is None or "jsonl" not in bulk:
            return Response(404, raw=b"NoSuchKey", headers={"Content-Type": "application/xml"})
        return Response(200, raw=bulk["jsonl"], headers={"Content-Type": "application/jsonl"})

    # --- webhooks ------------------------------------------------------------------------------

    def rest_payload(self, order: SandboxOrder) -> dict:
        local = _shop_time
        shipped = sum(line.shipped for line in order.lines)
        owed = sum(line.quantity - line.cancelled for line in order.lines)
        return {
            "id": int(order.order_id),
            "admin_graphql_api_id": f"gid://shopify/Order/{order.order_id}",
            "name": f"#{order.number}",
            "created_at": local(order.created_at),
            "updated_at": local(order.updated_at),
            "cancelled_at": local(order.updated_at) if order.status == "cancelled" else None,
            "cancel_reason": _cancel_reason(order).lower() if order.status == "cancelled" else None,
            "email": order_email(order),
            "phone": None,
            "shipping_address": {
                "name": order.buyer_name,
                "address1": order.address["line1"],
                "address2": order.address["line2"] or None,
                "city": order.address["city"],
                "province_code": order.address["region"],
                "zip": order.address["postal_code"],
                "country_code": order.address["country_code"],
                "phone": order.address["phone"],
            },
            "shipping_lines": [
                {"title": order_shipping(order)[0], "code": order_shipping(order)[1], "source": "shopify"}
            ],
            "financial_status": "paid" if order.paid else "pending",
            "fulfillment_status": "fulfilled" if owed and shipped >= owed else ("partial" if shipped else None),
            "currency": order.currency,
            "total_price": f"{sum(line.unit_price * line.quantity for line in order.lines):.2f}",
            "line_items": [
                {
                    "id": int(line.line_id),
                    "admin_graphql_api_id": f"gid://shopify/LineItem/{line.line_id}",
                    "sku": line.sku,
                    "title": line.title,
                    "quantity": line.quantity,
                    "current_quantity": line.quantity - line.cancelled,
                    "fulfillable_quantity": line.remaining,
                    "price": f"{line.unit_price:.2f}",
                }
                for line in order.lines
            ],
        }

    def _on_change(self, order: SandboxOrder, topic: str) -> None:
        if not self.webhook_url:
            return
        name = {"create": "orders/create", "cancel": "orders/cancelled"}.get(topic, "orders/updated")
        body = json.dumps(self.rest_payload(order), ensure_ascii=False).encode()
        record = {
            "topic": name,
            "webhook_id": str(uuid.uuid4()),
            "order_id": order.order_id,
            "triggered_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        self.webhook_queue_put({"body": body, "record": record})

    def signed_headers(self, delivery: dict) -> dict[str, str]:
        digest = hmac.new(self.webhook_secret.encode(), delivery["body"], hashlib.sha256).digest()
        record = delivery["record"]
        return {
            "Content-Type": "application/json",
            "X-Shopify-Topic": record["topic"],
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
            "X-Shopify-Shop-Domain": "waybill-sandbox.myshopify.com",
            "X-Shopify-API-Version": "2026-10",
            "X-Shopify-Webhook-Id": record["webhook_id"],
            "X-Shopify-Event-Id": str(uuid.uuid4()),
            "X-Shopify-Triggered-At": record["triggered_at"],
        }


SHOP_TZ = timezone(timedelta(hours=-5))


def _shop_time(value: datetime | None) -> str | None:
    """Webhook payloads are REST-shaped: shop-local time with an offset."""
    return value.astimezone(SHOP_TZ).isoformat() if value else None


def _flatten(value: Any, parent: str | None, rows: list[dict]) -> None:
    """A bulk result as JSONL rows: every connection node a row, children carrying ``__parentId``."""
    if not isinstance(value, dict):
        return
    nodes = value.get("nodes")
    if nodes is None and "edges" in value:
        nodes = [edge.get("node") for edge in value["edges"]]
    for node in nodes or []:
        row = {}
        children = []
        for key, child in node.items():
            if isinstance(child, dict) and ("edges" in child or "nodes" in child):
                children.append(child)
            else:
                row[key] = child
        if parent:
            row["__parentId"] = parent
        rows.append(row)
        for child in children:
            _flatten(child, node.get("id"), rows)


_SEARCH_TOKEN = re.compile(r'\s*(?:(OR|AND)\b|(?:(\w+):)?("(?:[^"\\]|\\.)*"|[^\s()]+))')


def search_terms(query: str) -> list[list[tuple[str, str]]]:
    """Shopify search syntax as disjunctive groups of (field, value) terms: ``sku:"A-1" OR sku:B``;
    terms side by side are ANDed; a double-quoted value keeps spaces, hyphens and colons, with
    backslash escapes. An empty query matches everything."""
    groups: list[list[tuple[str, str]]] = [[]]
    position = 0
    text = query.strip()
    while position < len(text):
        match = _SEARCH_TOKEN.match(text, position)
        if match is None or match.end() == position:
            break
        position = match.end()
        connective, field, value = match.groups()
        if connective == "OR":
            groups.append([])
            continue
        if connective == "AND" or value is None:
            continue
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        groups[-1].append(((field or "default").lower(), value))
    return [group for group in groups if group] or [[]]


def _term_matches(entry: dict, term: tuple[str, str]) -> bool:
    field, value = term
    if field == "sku":
        return entry["sku"].lower() == value.lower()
    if field == "default":
        return value.lower() in entry["sku"].lower() or value.lower() in entry["title"].lower()
    return False


def _numeric_return(return_id: str) -> str:
    return "".join(ch for ch in return_id if ch.isdigit()) or "0"


def _cancel_reason(order: SandboxOrder) -> str:
    reason = order.cancel_reason
    return reason if reason in CANCEL_REASON_VALUES else CANCEL_REASONS.get(reason, "OTHER")


def _error(error: GraphQLError, code: str) -> dict:
    formatted = error.formatted
    formatted.setdefault("extensions", {})
    formatted["extensions"].setdefault("code", code)
    return formatted
