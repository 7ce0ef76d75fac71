"""The layout rules of issue 15, read from the source itself.

Every source file's imports are read with `ast` (module level and inside
functions alike; relative imports resolved) and mapped to Shipway's top-level
packages. The rules:

- the runtime parts (runner, builder, router, storage, logger) import none of
  the user-facing parts (controller, hooks, gitd, cli) nor the composition
  root (server);
- nothing imports `server` except `server` itself and `cli` (the entry point);
- `core`, the shared kernel, imports no other Shipway package;
- the graph of top-level packages has no cycle;
- no source file is over 400 lines (migrations aside).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "server", "controller", "hooks", "gitd", "cli",
            "runner", "builder", "router", "storage", "logger")
RUNTIME = ("runner", "builder", "router", "storage", "logger")
USER_FACING = ("controller", "hooks", "gitd", "cli", "server")
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    files: list[Path] = []
    for package in PACKAGES:
        files.extend(sorted((ROOT / package).rglob("*.py")))
    return files


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # `from pkg import sub` may import a module named sub.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def top_level_edges() -> dict[str, dict[str, list[str]]]:
    """{importing package: {imported package: [files that import it]}}."""
    edges: dict[str, dict[str, list[str]]] = {p: {} for p in PACKAGES}
    for path in source_files():
        source = path.relative_to(ROOT).parts[0]
        for name in imported_modules(path):
            target = name.split(".")[0]
            if target in PACKAGES and target != source:
                edges[source].setdefault(target, []).append(str(path.relative_to(ROOT)))
    return edges


def _where(edges: dict[str, dict[str, list[str]]], source: str, target: str) -> str:
    return f"{source} -> {target} ({', '.join(sorted(set(edges[source][target])))})"


def test_runtime_parts_import_no_user_facing_part() -> None:
    edges = top_level_edges()
    bad = [_where(edges, s, t) for s in RUNTIME for t in edges[s] if t in USER_FACING]
    assert not bad, "runtime parts import user-facing parts:\n" + "\n".join(bad)


def test_only_cli_imports_server() -> None:
    edges = top_level_edges()
    bad = [_where(edges, s, "server") for s in PACKAGES
           if "server" in edges[s] and s not in ("cli",)]
    assert not bad, "server is the composition root; imported by:\n" + "\n".join(bad)


def test_core_imports_no_other_shipway_package() -> None:
    edges = top_level_edges()
    bad = [_where(edges, "core", t) for t in edges["core"]]
    assert not bad, "core must stand alone:\n" + "\n".join(bad)


def test_no_cycle_between_top_level_packages() -> None:
    edges = top_level_edges()
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for package in PACKAGES:
        if package not in state:
            cycle = visit(package)
            assert cycle is None, "import cycle: " + " -> ".join(
                _where(edges, a, b) for a, b in zip(cycle, cycle[1:]))


def _long_files() -> list[str]:
    long = []
    for path in source_files():
        if "alembic" in path.parts or "migrations" in path.parts:
            continue
        count = len(path.read_text().splitlines())
        if count > MAX_LINES:
            long.append(f"{path.relative_to(ROOT)}: {count} lines")
    return long


def test_no_source_file_over_400_lines() -> None:
    long = _long_files()
    assert not long, f"files over {MAX_LINES} lines:\n" + "\n".join(long)


def test_the_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The rules are only as good as the reader: a function-level import and
    a relative import are both found."""
    package = tmp_path / "runner"
    package.mkdir()
    (package / "__init__.py").write_text("")
    probe = package / "probe.py"
    probe.write_text("def f():\n    from controller.errors import NotFound\n"
                     "from .containers import x\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = imported_modules(probe)
    finally:
        ROOT = saved
    assert "controller.errors" in found
    assert "runner.containers" in found
