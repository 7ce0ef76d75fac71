"""The CLI of issue 18 items 5, 7 and 8 against a real `shipway server`
(in-memory runner and builder: no Docker), driven by a real `git push`:
apps:activity lists the scenario's operations in order with names and no
config values, releases:info shows the push's build output, webhooks:add
refuses a loopback URL, and Gigalixir's aliases run their targets."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.conftest import unique


@pytest.fixture
def memory_cli(make_server, tmp_path: Path) -> Cli:
    server = make_server(env={"SHIPWAY_RUNNER": "memory", "SHIPWAY_BUILDER": "memory"})
    home = tmp_path / "home"
    home.mkdir()
    cli = Cli(server, home)
    cli.signup()
    return cli


def git(cli: Cli, repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"HOME": str(cli.home), "GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin",
           "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=300, check=True)


def test_activity_releases_info_and_aliases(memory_cli: Cli, tmp_path: Path) -> None:
    cli = memory_cli
    repo = tmp_path / "src"
    repo.mkdir()
    (repo / "Procfile").write_text("web: python -m http.server $PORT\n")
    git(cli, repo, "init", "-q", "-b", "main")
    git(cli, repo, "add", "-A")
    git(cli, repo, "commit", "-q", "-m", "first")
    app = unique("act")
    assert app in cli.ok("apps:create", app, cwd=repo).stdout  # alias of `create`
    pushed = git(cli, repo, "push", "-q", "shipway", "main")
    assert "Released v1" in pushed.stderr or cli.json("releases", "-a", app)[0]["version"] == 1

    cli.ok("config:set", "DATABASE_URL=postgres://u:hunter2-secret@db/x", "-a", app)
    cli.ok("scale", "web=2", "-a", app)  # alias of ps:scale
    assert "Restarted" in cli.ok("restart", "-a", app).stdout  # alias of ps:restart
    rolled = cli.ok("rollback", "-r", "1", "-a", app).stdout  # alias and Gigalixir's -r
    assert "Rolled back" in rolled and "Rollback to v1" in rolled
    assert "-r VERSION" in cli.fails(2, "releases:rollback", "1", "-r", "2", "-a", app)

    entries = cli.json("apps:activity", "-a", app)
    actions = [e["action"] for e in reversed(entries)]
    assert actions == ["push", "deploy", "config", "scale", "restart", "rollback"], actions
    assert {e["user"] for e in entries} == {cli.json("account")["email"]}
    assert "hunter2-secret" not in str(entries)
    config = next(e for e in entries if e["action"] == "config")
    assert config["detail"]["set"] == ["DATABASE_URL"]
    table = cli.ok("apps:activity", "-a", app).stdout
    assert "hunter2-secret" not in table and "Set DATABASE_URL" in table
    assert table.index("rollback") < table.index("push")  # newest first
    assert [e["action"] for e in cli.json("apps:activity", "-n", "2", "-a", app)] == [
        "rollback", "restart"]
    cli.fails(2, "apps:activity", "-n", "0", "-a", app)

    info = cli.ok("releases:info", "v1", "-a", app).stdout
    assert "version:" in info and "v1" in info and "succeeded" in info
    assert "in-memory builder" in info  # the push's build output
    data = cli.json("releases:info", "1", "-a", app)
    assert data["build"]["status"] == "succeeded" and data["build"]["release_version"] == 1
    assert cli.json("releases:info", "v3", "-a", app)["build"] is None  # made by a rollback
    assert "no release v9" in cli.fails(1, "releases:info", "v9", "-a", app)

    refused = cli.fails(1, "webhooks:add", "https://127.0.0.1:9/hook", "-a", app)
    assert "loopback" in refused and "SHIPWAY_FETCH_ALLOW" in refused
    assert cli.json("webhooks", "-a", app) == []

    # `ssh` is ps:ssh, `apps:create` is create (same command objects)
    assert cli.ok("ssh", "--help").stdout.split("\n\n")[1] == \
        cli.ok("ps:ssh", "--help").stdout.split("\n\n")[1]


def test_migrate_alias_only_with_ps_migrate() -> None:
    from cli.main import cli as group

    assert ("migrate" in group.commands) == ("ps:migrate" in group.commands)
    if "ps:migrate" in group.commands:
        assert group.commands["migrate"] is group.commands["ps:migrate"]
    for alias, target in {"apps:create": "create", "restart": "ps:restart",
                          "scale": "ps:scale", "rollback": "releases:rollback",
                          "ssh": "ps:ssh"}.items():
        assert group.commands[alias] is group.commands[target]
