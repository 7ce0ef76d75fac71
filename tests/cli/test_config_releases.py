"""config, config:set, config:unset, releases, releases:rollback."""
from __future__ import annotations

import json

from tests.cli.conftest import Cli


def test_config_set_show_unset(logged_in: Cli, app: str) -> None:
    cli = logged_in
    assert cli.json("config", "-a", app) == {"config": {}}
    out = cli.ok("config:set", "A=1", "B=x=y", "EMPTY=", "-a", app).stdout
    assert "Set A, B, EMPTY" in out and "No release yet" in out
    assert cli.json("config", "-a", app)["config"] == {"A": "1", "B": "x=y", "EMPTY": ""}
    assert json.loads(cli.ok("-a", app, "--json", "config").stdout)["config"]["A"] == "1"
    table = cli.ok("config", "-a", app).stdout.splitlines()
    assert table[0].split() == ["NAME", "VALUE"] and table[2].split() == ["B", "x=y"]
    data = cli.json("config:unset", "A", "EMPTY", "-a", app)
    assert data["config"] == {"B": "x=y"} and data["release"] is None


def test_config_errors(logged_in: Cli, app: str) -> None:
    assert "KEY=VALUE" in logged_in.fails(2, "config:set", "novalue", "-a", app)
    assert "KEY=VALUE" in logged_in.fails(2, "config:set", "=x", "-a", app)
    logged_in.fails(2, "config:set", "-a", app)
    logged_in.fails(2, "config:unset", "-a", app)
    error = logged_in.fails(1, "config:set", "1BAD=x", "-a", app)
    assert "1BAD" in error
    assert logged_in.json("config", "-a", app) == {"config": {}}


def test_releases_without_a_deploy(logged_in: Cli, app: str) -> None:
    assert logged_in.json("releases", "-a", app) == []
    assert "(none)" in logged_in.ok("releases", "-a", app).stdout
    assert logged_in.fails(1, "releases:rollback", "-a", app) == \
        f"Error: {app} has no live release to roll back from"
    logged_in.fails(1, "releases:rollback", "v3", "-a", app)
    assert "release number" in logged_in.fails(2, "releases:rollback", "three", "-a", app)
    assert logged_in.json("releases", "-a", app) == []
