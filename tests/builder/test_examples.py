"""Each example app builds into a slug with the bundled buildpacks."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.builder.helpers import make_app, slug_members
from tests.conftest import ROOT

EXPECT = {
    "elixir": ("Elixir", "_build/prod/rel/hello/bin/hello start", "_build/prod/rel/hello/bin/hello"),
    "python": ("Python", "python3 app.py", ".venv/bin/python"),
    "nodejs": ("Node.js", "npm start", "server.js"),
    "procfile": ("Procfile", "python3 serve.py", "serve.py"),
}


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(EXPECT))
def test_example_builds(example: str, tmp_path: Path, run_build) -> None:
    repo, sha = make_app(tmp_path, copy_from=ROOT / "examples" / example)
    result, out = run_build(repo, sha, app=f"ex-{example}")
    detected, web, must_have = EXPECT[example]
    assert f"-----> {detected} app detected" in out.lines
    assert result.buildpacks == [example]
    assert result.process_types["web"] == web
    members = slug_members(result.slug_path)
    assert must_have in members
    data = result.slug_path.read_bytes()
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    # the source is owned by the app user in the slug, with no /app prefix
    assert all(not name.startswith(("/", "app/")) for name in members)
    assert members[must_have].uid == 1000
    result.slug_path.unlink()
