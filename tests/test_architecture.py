"""The import contract (../shared/DESIGN.md, "Apps and what each owns"), read from the source with ``ast``.

Every import counts, lazy ones inside functions and ``TYPE_CHECKING`` blocks included:
- ``orders`` and ``inventory`` never import ``channels``, ``fulfillment`` or ``returns``;
- nothing but ``scorecards`` imports ``scorecards``;
- the kernel (``config/kernel``) imports no app;
- no app reaches into another app's models with ``apps.get_model``;
- no app has an import circle between its own modules;
- no module imports another module's private (underscore) names, or reads them off an imported module.

pyproject.toml's ``[tool.importlinter]`` states the first four as import-linter contracts; this test
holds the build to them without that package installed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("orders", "inventory", "fulfillment", "channels", "returns", "scorecards")
PACKAGES = ("config", *APPS)
KERNEL = "config.kernel"
CORE = ("orders", "inventory")
OUTER = ("channels", "fulfillment", "returns")

# Known violations, each named for the change that removes it. An allowance that no longer matches
# anything fails the test: delete it with the change.
GET_MODEL_ALLOWANCES: dict[tuple[str, str], str] = {}

# An import circle inside an app, allowed by name. None are left: a service that wants its own app's task
# run announces what happened (channels.signals) and the tasks module listens, or the tasks module hosts the
# scheduling (channels.tasks.channel_availability_schedule); the service never imports its tasks module.
IMPORT_CIRCLE_ALLOWANCES: dict[tuple[str, str], str] = {}
# Private names imported across modules, allowed by name. None are left.
PRIVATE_NAME_ALLOWANCES: dict[tuple[str, str], str] = {}


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: list[tuple[str, int]] = field(default_factory=list)  # (module imported, line)
    private_uses: list[tuple[str, int]] = field(default_factory=list)  # ("module._name", line)
    get_models: list[tuple[str, int]] = field(default_factory=list)  # (app label, line)

    @property
    def app(self) -> str:
        return self.name.split(".")[0]


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


@cache
def _known_modules() -> frozenset[str]:
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            names.add(_module_name(path)[0])
    return frozenset(names)


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _label_of(call: ast.Call) -> str | None:
    if not (isinstance(call.func, ast.Attribute) and call.func.attr == "get_model") or not call.args:
        return None
    first = call.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return None
    return first.value.split(".")[0]


def _read(path: Path) -> Module:
    name, is_package = _module_name(path)
    return _parse(Module(name=name, path=path, is_package=is_package), path.read_text())


def _parse(module: Module, text: str) -> Module:
    name = module.name
    tree = ast.parse(text, filename=str(module.path))
    known = _known_modules()
    aliases: dict[str, str] = {}  # local name -> one of our modules
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    module.imports.append((alias.name, node.lineno))
                    if alias.asname:
                        aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            if not _ours(source):
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if target in known:
                    module.imports.append((target, node.lineno))
                    aliases[alias.asname or alias.name] = target
                else:
                    module.imports.append((source, node.lineno))
                    if alias.name.startswith("_") and not alias.name.startswith("__") and source != name:
                        module.private_uses.append((target, node.lineno))
        elif isinstance(node, ast.Call):
            label = _label_of(node)
            if label is not None:
                module.get_models.append((label, node.lineno))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            module.private_uses.append((f"{aliases[node.value.id]}.{node.attr}", node.lineno))
    return module


@cache
def _modules() -> tuple[Module, ...]:
    paths = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
    return tuple(_read(path) for path in paths)


def _where(module: Module, line: int) -> str:
    return f"{module.path.relative_to(ROOT)}:{line}"


def _imports_of(prefixes: tuple[str, ...], targets: tuple[str, ...]) -> list[str]:
    found = []
    for module in _modules():
        if not module.name.startswith(prefixes):
            continue
        for imported, line in module.imports:
            if imported.split(".")[0] in targets:
                found.append(f"{_where(module, line)} imports {imported}")
    return found


def test_orders_and_inventory_import_no_outer_app():
    assert _imports_of(tuple(f"{app}." for app in CORE) + CORE, OUTER) == []


def test_only_scorecards_imports_scorecards():
    others = tuple(p for p in PACKAGES if p != "scorecards")
    assert _imports_of(others, ("scorecards",)) == []


def test_the_kernel_imports_no_app():
    assert _imports_of((KERNEL,), APPS) == []


def test_no_app_loads_another_apps_models_with_get_model():
    found, used = [], set()
    for module in _modules():
        if module.app not in APPS:
            continue
        for label, line in module.get_models:
            if label == module.app or label not in APPS:
                continue
            if (module.name, label) in GET_MODEL_ALLOWANCES:
                used.add((module.name, label))
                continue
            found.append(f"{_where(module, line)} loads a model of {label} with get_model")
    assert found == []
    assert set(GET_MODEL_ALLOWANCES) - used == set(), "an allowance matches nothing any more: delete it"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself): Tarjan's."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _app_graph(package: str) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in _modules():
        if module.app != package:
            continue
        graph.setdefault(module.name, set())
        for imported, _ in module.imports:
            if imported.split(".")[0] == package and imported != module.name:
                graph[module.name].add(imported)
    return graph


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle_inside_an_app(package):
    graph = _app_graph(package)
    for importer, imported in IMPORT_CIRCLE_ALLOWANCES:
        graph.get(importer, set()).discard(imported)
    assert _cycles(graph) == []


def test_every_import_circle_allowance_still_closes_a_circle():
    for importer, imported in IMPORT_CIRCLE_ALLOWANCES:
        graph = _app_graph(importer.split(".")[0])
        assert imported in graph.get(importer, ()), f"{importer} no longer imports {imported}: delete the allowance"
        assert any(importer in c and imported in c for c in _cycles(graph)), f"{importer} -> {imported}: no circle"


def test_no_module_uses_another_modules_private_names():
    found, used = [], set()
    for module in _modules():
        for name, line in module.private_uses:
            if name.rsplit(".", 1)[0] == module.name:
                continue
            if (module.name, name) in PRIVATE_NAME_ALLOWANCES:
                used.add((module.name, name))
                continue
            found.append(f"{_where(module, line)} uses {name}")
    assert found == []
    assert set(PRIVATE_NAME_ALLOWANCES) - used == set(), "an allowance matches nothing any more: delete it"


def test_the_reader_finds_lazy_relative_and_private_imports_and_get_model():
    # given a module of orders with a lazy import, a relative import of a private name and a get_model call
    text = (
        "def f():\n"
        "    from channels.models import ChannelAccount\n"
        "    from .services.common import _x\n"
        "    apps.get_model('channels', 'Listing')\n"
    )
    # when it is read
    read = _parse(Module(name="orders.probe", path=ROOT / "orders" / "probe.py", is_package=False), text)
    # then each is found
    assert ("channels.models", 2) in read.imports
    assert ("orders.services.common._x", 3) in read.private_uses
    assert ("channels", 4) in read.get_models


def test_inventory_queries_name_no_relation_of_the_outer_apps():
    """No ORM lookup in inventory walks into channels, fulfillment or returns through a reverse relation they
    hang on inventory's models (``location__channel_accounts``), or through an order's channel account."""
    from django.apps import apps

    names = {"account__"}
    for label in OUTER:
        for model in apps.get_app_config(label).get_models():
            for relation in model._meta.get_fields():
                target = getattr(relation, "related_model", None)
                into_core = relation.is_relation and target is not None and target._meta.app_label in CORE
                if into_core and not relation.auto_created:
                    names.add(relation.related_query_name() + "__")
                    names.add(relation.related_query_name() + "=")
    found = []
    for path in sorted((ROOT / "inventory").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for number, text in enumerate(path.read_text().splitlines(), 1):
            hits = sorted(
                name
                for name in names
                if f"__{name}" in text or f'"{name}' in text or f"({name}" in text or text.strip().startswith(name)
            )
            if hits:
                found.append(f"{path.relative_to(ROOT)}:{number} names {hits}")
    assert found == []
