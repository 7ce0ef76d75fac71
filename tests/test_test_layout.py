"""Issue 15 item 7: the tests that drive Docker live under tests/e2e/, so the
rest of the suite runs without a Docker engine.

Every test module and conftest outside tests/e2e/ is read with `ast`; none may
- import the Docker SDK (`docker`, at module level or inside a function);
- request a fixture that needs Docker: `stack_image`, or one that only the
  conftests under tests/e2e/ define (`make_builder`, `run_build`, `rig`...),
  as a parameter, in `usefixtures` or through `getfixturevalue`;
- start a `shipway server` on Docker: a `ShipwayServer(...)` whose env does
  not name the in-memory runner and builder, or an env that names Docker.
(tests/conftest.py itself is shared by both sides and is not read.)
"""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
E2E = TESTS / "e2e"
BACKEND_VARS = ("SHIPWAY_RUNNER", "SHIPWAY_BUILDER")


def _is_fixture(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if getattr(target, "attr", getattr(target, "id", "")) == "fixture":
            return True
    return False


def _fixture_names(path: Path) -> set[str]:
    """The fixtures a conftest defines (functions under @pytest.fixture)."""
    return {node.name for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
            if isinstance(node, ast.FunctionDef) and _is_fixture(node)}


def _outside_e2e() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py")
                  if E2E not in p.parents and p != TESTS / "conftest.py"
                  and (p.name.startswith("test_") or p.name == "conftest.py"))


def docker_fixtures() -> set[str]:
    """`stack_image`, and the fixtures only the e2e conftests define (a
    fixture both sides define, such as make_server, is not one)."""
    e2e = set().union(*(_fixture_names(p) for p in E2E.rglob("conftest.py")))
    elsewhere = set().union(*(_fixture_names(p) for p in TESTS.rglob("conftest.py")
                              if E2E not in p.parents))
    return {"stack_image"} | (e2e - elsewhere)


def _str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _env_is_memory(env: ast.AST | None) -> bool:
    if isinstance(env, ast.Name) and env.id == "MEMORY_BACKENDS":
        return True
    if not isinstance(env, ast.Dict):
        return False
    if any(k is None and isinstance(v, ast.Name) and v.id == "MEMORY_BACKENDS"
           for k, v in zip(env.keys, env.values)):
        return True
    given = {_str(k): _str(v) for k, v in zip(env.keys, env.values) if k is not None}
    return all(given.get(var) == "memory" for var in BACKEND_VARS)


def docker_uses(path: Path, fixtures: set[str]) -> list[str]:
    """What in `path` needs Docker, each as 'line: reason'."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [f"{line}: imports {a.name}" for a in node.names
                      if a.name.split(".")[0] == "docker"]
        elif isinstance(node, ast.ImportFrom) and not node.level \
                and (node.module or "").split(".")[0] == "docker":
            found.append(f"{line}: imports from {node.module}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                and (node.name.startswith("test") or _is_fixture(node)):
            found += [f"{line}: {node.name} requests the Docker fixture {a.arg}"
                      for a in node.args.args + node.args.kwonlyargs if a.arg in fixtures]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("usefixtures", "getfixturevalue"):
                found += [f"{line}: {name}({s!r})" for s in map(_str, node.args) if s in fixtures]
            if name == "ShipwayServer":
                env = next((k.value for k in node.keywords if k.arg == "env"), None)
                if not _env_is_memory(env):
                    found.append(f"{line}: starts a ShipwayServer without the in-memory "
                                 "runner and builder (its env does not name them)")
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if _str(k) in BACKEND_VARS and _str(v) not in (None, "memory"):
                    found.append(f"{line}: {_str(k)}={_str(v)} (a server on Docker)")
    return found


def test_only_tests_under_e2e_drive_docker() -> None:
    fixtures = docker_fixtures()
    problems = [f"{p.relative_to(TESTS.parent)}:{use}"
                for p in _outside_e2e() for use in docker_uses(p, fixtures)]
    assert not problems, "move these under tests/e2e/<package>/:\n" + "\n".join(problems)


def test_the_check_sees_each_way_of_driving_docker(tmp_path: Path) -> None:
    fixtures = docker_fixtures()
    assert {"stack_image", "make_builder", "run_build", "rig"} <= fixtures
    assert "make_server" not in fixtures and "shipway_server" not in fixtures
    misplaced = tmp_path / "test_misplaced.py"
    misplaced.write_text(
        "import pytest\n"
        "def test_a(make_server):\n    import docker.errors\n"
        "    make_server(env={'SHIPWAY_RUNNER': 'docker'})\n"
        "def test_b(request, *, run_build):\n    request.getfixturevalue('stack_image')\n"
        "@pytest.mark.usefixtures('rig')\ndef test_c():\n"
        "    ShipwayServer(d, env={'SHIPWAY_RUNNER': 'memory'})\n"
        "def test_fine(tmp_path):\n"
        "    ShipwayServer(d, env={**MEMORY_BACKENDS, 'X': '1'})\n"
        "    ShipwayServer(d, env={'SHIPWAY_RUNNER': 'memory', 'SHIPWAY_BUILDER': 'memory'})\n")
    found = docker_uses(misplaced, fixtures)
    assert sorted(int(use.split(":")[0]) for use in found) == [3, 4, 5, 6, 7, 9], found
