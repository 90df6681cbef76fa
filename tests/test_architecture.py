"""The import rules of docs/architecture.md: packages import only downwards, the SDK imports
no server code, and no modules import each other in a cycle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lower layers never import higher ones; a package may import its own layer's modules.
LAYERS = {
    "schemas": 0,  # wire types: decode, validate, encode
    "grouping": 0,  # which issue an error belongs to (shared with the SDK)
    "retry": 0,  # the one jittered backoff (shared with the SDK)
    "histograms": 1,  # HDR histograms (domain library)
    "detection": 1,  # anomaly detector and threshold rules (domain library)
    "alerting": 1,  # alert wording and routing (domain library)
    "sla": 1,  # SLA maths: uptime, evaluation, error budgets (domain library)
    "stages": 2,  # the runnable pure stages and their contract
    "sinks": 3,  # notifier integrations (they word alerts with alerting's helpers)
    "pipeline": 4,  # the runtime: Kafka I/O, runners, config, health
    "ops": 5,  # the CLI, dashboards, renderers, offline tools
    "loadtest": 5,  # fleet simulator and load harness (driven by the CLI)
}
SDK = "production_monitor"  # ships to services: wire types at most, never server code
SDK_MAY_IMPORT = {"schemas", "grouping", "retry"}
# Known violations, to be removed (the list may only shrink; docs/architecture.md).
KNOWN: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for package in [*LAYERS, SDK]:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_packages_import_only_downwards_and_the_sdk_imports_no_server_code():
    violations = set()
    for name, path in _modules().items():
        package = name.split(".")[0]
        for imported in _imports(path, module_level_only=False):
            target = imported.split(".")[0]
            if target == package or (target not in LAYERS and target != SDK):
                continue
            if package == SDK:
                allowed = target in SDK_MAY_IMPORT
            else:
                allowed = target != SDK and LAYERS[target] <= LAYERS[package]
            if not allowed:
                violations.add((str(path.relative_to(ROOT)), imported))
    unknown = {v for v in violations if not _is_known(v)}
    assert unknown == set(), "a package imports upwards (docs/architecture.md)"
    stale = {k for k in KNOWN if not any(_matches(k, v) for v in violations)}
    assert stale == set(), "a known violation is gone: remove it from KNOWN"


def _matches(known: tuple[str, str], violation: tuple[str, str]) -> bool:
    return known[0] == violation[0] and (
        violation[1] == known[1] or violation[1].startswith(known[1] + ".")
    )


def _is_known(violation: tuple[str, str]) -> bool:
    return any(_matches(k, violation) for k in KNOWN)


def test_no_modules_import_each_other_in_a_cycle():
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        edges[name] = {m for m in _imports(path, module_level_only=True) if m in modules}
    # Tarjan's strongly connected components: any with more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in modules:
        if name not in index:
            visit(name)
    assert cycles == []
