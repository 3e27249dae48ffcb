"""The layout docs/architecture.md describes, held against the code: imports go one way.

Every import counts, at the top of a module or inside a function: a lazy import is still an
arrow a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "dashboard"
FEATURES = ("browse", "deletion", "gc", "health", "insight", "history", "sync")
SHARED = ("conf", "disk", "ordering", "remote", "runs", "web")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The dashboard modules `path` imports (a `from package import name` counts as the
    submodule when there is one)."""
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dashboard")}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            if not target.startswith("dashboard"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    return found


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    paths = [p for p in DASHBOARD.rglob("*.py") if "migrations" not in p.parts]
    return {_module(p): _imports(p) - {_module(p)} for p in paths}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle, or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_imports__no_circles_in_dashboard() -> None:
    graph = _graph()
    # A module naming its own package (`from . import x` where x lives in __init__) is no circle
    # a reader must untangle.
    flat = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}
    assert _cycle(flat) == []


def test_imports__the_registry_client_has_no_django() -> None:
    for path in (DASHBOARD / "registry").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        assert not {n for n in names if n.split(".")[0] == "django"}, path
        assert not {n for n in _imports(path) if not n.startswith("dashboard.registry")}, path


@pytest.mark.parametrize(
    "layer", ["dashboard.index", "dashboard.registry", *(f"dashboard.{m}" for m in SHARED), "dashboard.models"]
)
def test_imports__lower_layers_import_no_page_and_no_feature(layer: str) -> None:
    pages = {f"dashboard.{f}.views" for f in FEATURES} | {f"dashboard.{f}.urls" for f in FEATURES}
    features = tuple(f"dashboard.{f}" for f in FEATURES)
    for module, deps in _graph().items():
        if module == layer or module.startswith(layer + "."):
            assert not deps & pages, (module, deps & pages)
            assert not [d for d in deps if d.startswith(features)], module


def test_layout__every_feature_has_pages_urls_and_a_docstring() -> None:
    for feature in FEATURES:
        package = DASHBOARD / feature
        assert (package / "views.py").exists() and (package / "urls.py").exists(), feature
        assert ast.get_docstring(ast.parse((package / "__init__.py").read_text())), feature
        assert (ROOT / "templates" / feature).is_dir(), feature
    for package in ("index", "registry"):
        assert ast.get_docstring(ast.parse((DASHBOARD / package / "__init__.py").read_text())), package


def test_layout__the_architecture_map_names_every_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    packages = [p.name for p in DASHBOARD.iterdir() if (p / "__init__.py").exists() and p.name != "migrations"]
    modules = [p.stem for p in DASHBOARD.glob("*.py") if p.stem != "__init__"]
    missing = [n for n in packages if f"dashboard/{n}/" not in text and f"`{n}/`" not in text]
    missing += [n for n in modules if f"{n}.py" not in text and f"`{n}`" not in text]
    assert missing == []
