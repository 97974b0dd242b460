"""The house by domain holds: packages import only the packages below them, modules import no circle, and no
module imports another's private names. Read from the code's own imports (lazy ones inside functions included), so a
new upward import fails here before anyone has to find it.

From the bottom up (``LAYERS``): the plain building blocks and the audit chain; the models; IAM documents; the AWS
adapters; who may do what; telling people; the audit trail; the domains, each above what it uses; the worlds for the
demo and the benchmarks; the deployment doctor; and the faces (pages, API, admin, tasks, commands), which may use
anything below them.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "accessrequests"

LAYERS: list[set[str]] = [
    {"core", "ledger"},
    {"models"},
    {"policy"},
    {"aws"},
    {"authz"},
    {"notify"},
    {"audit"},
    {"intake"},
    {"governance"},
    {"catalog"},
    {"provisioning"},
    {"workflow"},
    {"reviews"},
    {"identity"},
    {"slack"},
    {"devworld"},
    {"doctor"},
    # The faces: they render and parse, and call the domains.
    {"views", "api", "admin", "governed_admin", "dashboard", "tasks", "urls", "apps", "management", "templatetags",
     "chain"},
]  # fmt: skip
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}

# Imports from a lower package to a higher one that are allowed, each with its reason. None today.
UPWARD: dict[tuple[str, str], str] = {}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module(path): path
        for path in PACKAGE.rglob("*.py")
        if "migrations" not in path.relative_to(PACKAGE).parts
    }


def _imports(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """Every module's imports of another Gatehouse module (the module, or the package's submodule imported by
    name), with the line of the first."""
    found: dict[str, dict[str, int]] = defaultdict(dict)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if full in modules else base)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name and target != "accessrequests":
                    found[name].setdefault(target, node.lineno)
    return found


def _package(module: str) -> str:
    return module.split(".")[1]


def test_every_package_has_a_layer():
    packages = {_package(module) for module in _modules() if module != "accessrequests"}
    assert packages - set(RANK) == set()


def test_no_package_imports_one_above_it():
    upward = []
    for module, targets in _imports(_modules()).items():
        for target, line in targets.items():
            low, high = _package(module), _package(target)
            if low != high and RANK[low] < RANK[high] and (low, high) not in UPWARD:
                upward.append(f"{module}:{line} imports {target}")
    assert upward == []


def test_no_two_packages_of_one_layer_import_each_other():
    edges = {
        (_package(module), _package(target))
        for module, targets in _imports(_modules()).items()
        for target in targets
        if _package(module) != _package(target) and RANK[_package(module)] == RANK[_package(target)]
    }
    assert {(a, b) for a, b in edges if (b, a) in edges} == set()


def test_no_module_import_circle():
    """Modules, lazy imports included: a circle through a function-level import is still a circle."""
    graph = {module: set(targets) for module, targets in _imports(_modules()).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in list(graph):
        if module not in index:
            visit(module)
    assert circles == []


def test_no_module_imports_another_modules_private_names():
    """What crosses a module boundary has a public name; a leading underscore means "this module only"."""
    modules = _modules()
    crossing = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("accessrequests"):
                crossing += [
                    f"{name}:{node.lineno} {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert crossing == []
