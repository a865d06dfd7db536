"""The channels' published API models as validators: what a sandbox refuses and a contract test checks.

Each sandbox validates the requests it receives against the model in ../shared/channel-specs (the
JSON Schema of the body and the declared query parameters: types, ``required``, ``enum``,
``pattern``, ``maxLength``, ``minimum``…), with jsonschema, so it refuses what the marketplace
refuses instead of what the connector happens to send. The contract tests in tests/channels run
the connectors' outbound bodies through the same validators.

Swagger 2.0 (Amazon) keeps a body schema in a ``body`` parameter and its schemas under
``definitions``; OpenAPI 3 (Walmart, eBay) under ``requestBody`` and ``components``. OpenAPI 3.0's
``nullable`` is not JSON Schema: it is rewritten to a type that admits null before validating.
Limits a model states only in prose (Amazon's numeric ``packageReferenceId``) are the sandbox's
own checks on top of these.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

__all__ = ["ContractViolation", "Operation", "operation", "spec", "spec_path"]


def spec_path(name: str) -> Path:
    return Path(settings.CHANNEL_SPECS_DIR) / name


@cache
def spec(name: str) -> dict:
    """A model from ../shared/channel-specs, loaded once per process."""
    return json.loads(spec_path(name).read_text())


@dataclass(frozen=True)
class ContractViolation:
    """One way a request breaks the model: where (a dotted path, ``body`` or ``query.<name>``) and why."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _openapi3_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 schema keywords jsonschema doesn't know, rewritten (``nullable``), recursively."""
    if isinstance(node, list):
        return [_openapi3_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _openapi3_to_jsonschema(value) for key, value in node.items()}
    if out.pop("nullable", False) is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


# Places where a published model contradicts itself, corrected before validating: (model, JSON pointer of a
# "$ref", the reference it should hold). walmart-orders.json: the shipping request's ``orderLines`` points
# at RefundLinesType (whose lines require ``refunds``), the wrapper its generator reused for every
# ``orderLines``; the model's own shipping example carries no ``refunds`` and fails that schema, and the
# shipment line types it defines (ShippingLinesType: lineNumber, sellerOrderId, intentToCancelOverride;
# ShipLineStatusesType: a Shipped status with trackingInfo) are referenced by nothing.
ERRATA: dict[str, list[tuple[str, str]]] = {
    "walmart-orders.json": [
        ("/components/schemas/OrderShipmentRecord/properties/orderLines", "#/components/schemas/ShippingLinesType"),
        (
            "/components/schemas/ShippingLineType/properties/orderLineStatuses",
            "#/components/schemas/ShipLineStatusesType",
        ),
    ],
}


def _apply_errata(name: str, document: dict) -> dict:
    for pointer, ref in ERRATA.get(name, []):
        node: Any = document
        for part in pointer.lstrip("/").split("/"):
            node = node[part]
        node.clear()
        node["$ref"] = ref
    return document


@cache
def _registry(name: str) -> tuple[Registry, dict]:
    document = spec(name)
    if "openapi" in document:
        document = _openapi3_to_jsonschema(copy.deepcopy(document))
    if name in ERRATA:
        document = _apply_errata(name, document if "openapi" in spec(name) else copy.deepcopy(document))
    resource = Resource.from_contents(document, default_specification=DRAFT4)
    return Registry().with_resource(uri=f"urn:spec:{name}", resource=resource), document


_FORMATS = FormatChecker(formats=("date", "email", "ipv4", "uuid"))


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    """RFC 3339: a date, a time and a zone (``Z`` or an offset)."""
    if not isinstance(value, str):
        return True
    if not re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


@dataclass(frozen=True)
class Operation:
    """One operation of one model: its body schema and its declared query parameters."""

    spec_name: str
    method: str
    path: str
    body_schema: dict | None
    body_required: bool
    query: dict[str, dict]

    def _validator(self, schema: dict) -> Draft4Validator:
        registry, _ = _registry(self.spec_name)
        # Refs inside the schema ("#/definitions/X") resolve against the whole document.
        rooted = {**schema, "$id": f"urn:spec:{self.spec_name}"} if "$ref" not in schema else schema
        return Draft4Validator(rooted, registry=registry, format_checker=_FORMATS)

    def body_violations(self, body: Any) -> list[ContractViolation]:
        if self.body_schema is None:
            return []
        if body is None:
            return [ContractViolation("body", "is required")] if self.body_required else []
        schema = {"$ref": f"urn:spec:{self.spec_name}#{self.body_schema['$pointer']}"}
        validator = self._validator(schema)
        violations = []
        for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            chosen = best_match([error]) if error.context else error
            where = ".".join(str(p) for p in chosen.absolute_path)
            violations.append(ContractViolation(f"body.{where}" if where else "body", chosen.message[:500]))
        return violations

    def query_violations(self, query: dict[str, str]) -> list[ContractViolation]:
        """Missing required parameters and values outside a parameter's enum, pattern or bounds."""
        violations = []
        for name, param in self.query.items():
            value = query.get(name)
            if value is None:
                if param.get("required"):
                    violations.append(ContractViolation(f"query.{name}", "is required"))
                continue
            schema = dict(param.get("schema") or {k: v for k, v in param.items() if k not in ("name", "in")})
            schema.pop("required", None)
            schema.pop("description", None)
            kind = schema.get("type")
            if kind in ("integer", "number"):
                try:
                    typed: Any = int(value) if kind == "integer" else float(value)
                except ValueError:
                    violations.append(ContractViolation(f"query.{name}", f"{value!r} is not an {kind}"))
                    continue
            elif kind == "array":
                typed = value.split(",")
            elif kind == "boolean":
                typed = {"true": True, "false": False}.get(value, value)
            else:
                typed = value
            for error in self._validator(_openapi3_to_jsonschema(schema)).iter_errors(typed):
                violations.append(ContractViolation(f"query.{name}", error.message[:500]))
        return violations

    def violations(self, *, body: Any = None, query: dict[str, str] | None = None) -> list[ContractViolation]:
        return self.body_violations(body) + self.query_violations(query or {})


def _pointer_escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@cache
def operation(spec_name: str, method: str, path: str) -> Operation:
    """The operation at ``path`` (the model's template, e.g. ``/v3/orders/{purchaseOrderId}/shipping``)."""
    _, document = _registry(spec_name)
    method = method.lower()
    try:
        path_item = document["paths"][path]
        op = path_item[method]
    except KeyError:
        raise KeyError(f"{spec_name} has no operation {method.upper()} {path}") from None
    base = f"/paths/{_pointer_escape(path)}/{method}"
    params = [*path_item.get("parameters", []), *op.get("parameters", [])]
    resolved = []
    for param in params:
        if "$ref" in param:
            target: Any = document
            for part in param["$ref"].lstrip("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            param = target
        resolved.append(param)
    body_schema, body_required = None, False
    for index, param in enumerate(op.get("parameters", [])):
        if param.get("in") == "body":  # Swagger 2.0
            body_schema = {"$pointer": f"{base}/parameters/{index}/schema"}
            body_required = bool(param.get("required"))
    request_body = op.get("requestBody")
    if request_body:  # OpenAPI 3
        if "$ref" in request_body:
            ref = request_body["$ref"].lstrip("#")
            target = document
            for part in ref.lstrip("/").split("/"):
                target = target[part]
            request_body, pointer = target, ref
        else:
            pointer = f"{base}/requestBody"
        content = request_body.get("content", {})
        media = next((m for m in content if "json" in m), None)
        if media is not None and "schema" in content[media]:
            body_schema = {"$pointer": f"{pointer}/content/{_pointer_escape(media)}/schema"}
            body_required = bool(request_body.get("required"))
    query = {p["name"]: p for p in resolved if p.get("in") == "query"}
    return Operation(spec_name, method, path, body_schema, body_required, query)


@cache
def _templates(spec_name: str) -> list[tuple[re.Pattern, str]]:
    _, document = _registry(spec_name)
    compiled = []
    for template in document["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        compiled.append((re.compile(pattern), template))
    # Literal paths before templated ones: /v3/orders/released is not /v3/orders/{purchaseOrderId}.
    compiled.sort(key=lambda item: item[1].count("{"))
    return compiled


def template_for(spec_name: str, path: str) -> str | None:
    """The model's path template a concrete request path matches (without the server's base path)."""
    for pattern, template in _templates(spec_name):
        if pattern.match(path):
            return template
    return None
