"""create, apps, apps:info, apps:destroy, git:remote; app from -a or the
`shipway` git remote."""
from __future__ import annotations

import subprocess

from tests.cli.conftest import Cli, git_repo
from tests.conftest import unique


def remote_url(repo) -> str:
    return subprocess.run(["git", "remote", "get-url", "shipway"], cwd=repo,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_create_inside_a_repo_adds_the_remote(logged_in: Cli, tmp_path) -> None:
    repo = git_repo(tmp_path / "repo")
    name = unique("cli")
    out = logged_in.ok("create", name, cwd=repo).stdout
    assert f"Created app {name}" in out
    url = f"{logged_in.server.url}/{name}.git"
    assert remote_url(repo) == url
    # Commands inside the repo find the app through the remote.
    info = logged_in.json("apps:info", cwd=repo)
    assert info["name"] == name and info["urls"]["git_http"] == url
    assert info["urls"]["git_ssh"] == f"ssh://git@127.0.0.1:{logged_in.server.ssh_port}/{name}.git"
    assert info["urls"]["web"] == f"http://{name}.localhost:{logged_in.server.router_port}/"
    assert info["release"] is None and info["formation"] == {"web": 1}
    text = logged_in.ok("apps:info", cwd=repo).stdout
    assert "(none yet: git push to deploy)" in text and "web=1" in text


def test_create_outside_a_repo_and_generated_names(logged_in: Cli) -> None:
    data = logged_in.json("create")
    assert data["name"] and data["role"] == "owner"
    assert "Git remote" not in logged_in.ok("create").stdout
    names = [a["name"] for a in logged_in.json("apps")]
    assert data["name"] in names and len(names) == 2
    assert data["name"] in logged_in.ok("apps").stdout


def test_create_errors(logged_in: Cli, app: str) -> None:
    assert "taken" in logged_in.fails(1, "create", app)
    assert "invalid app name" in logged_in.fails(1, "create", "Bad_Name")


def test_no_app_is_a_usage_error(logged_in: Cli, tmp_path) -> None:
    assert "-a APP" in logged_in.fails(2, "apps:info", cwd=git_repo(tmp_path / "r"))
    assert "-a APP" in logged_in.fails(2, "config")


def test_unknown_app(logged_in: Cli) -> None:
    assert logged_in.fails(1, "apps:info", "-a", "no-such-app-x") == \
        "Error: no app named 'no-such-app-x'"


def test_git_remote(logged_in: Cli, app: str, tmp_path) -> None:
    repo = git_repo(tmp_path / "repo")
    data = logged_in.json("git:remote", app, cwd=repo)
    assert data == {"app": app, "remote": "shipway", "action": "added",
                    "url": f"{logged_in.server.url}/{app}.git"}
    subprocess.run(["git", "remote", "set-url", "shipway", "http://elsewhere/x.git"], cwd=repo,
                   check=True)
    assert "updated" in logged_in.ok("git:remote", "-a", app, cwd=repo).stdout
    assert remote_url(repo) == f"{logged_in.server.url}/{app}.git"
    assert "not inside a git repository" in logged_in.fails(2, "git:remote", app)


def test_destroy_needs_confirmation(logged_in: Cli, app: str) -> None:
    assert f"--confirm {app}" in logged_in.fails(2, "apps:destroy", "-a", app)
    assert "does not match" in logged_in.fails(2, "apps:destroy", "-a", app, "--confirm", "x")
    assert app in [a["name"] for a in logged_in.json("apps")]
    data = logged_in.json("apps:destroy", "-a", app, "--confirm", app)
    assert data == {"ok": True, "name": app}
    assert app not in [a["name"] for a in logged_in.json("apps")]
    assert logged_in.fails(1, "apps:info", "-a", app) == f"Error: no app named '{app}'"


def test_collaborator_cannot_destroy(app: str, logged_in: Cli) -> None:
    owner_email = logged_in.json("account")["email"]
    other = Cli(logged_in.server, logged_in.home.parent / "other")
    other.home.mkdir()
    email, _ = other.signup()
    logged_in.ok("access:add", email, "-a", app)
    apps = other.json("apps")
    assert [(a["name"], a["role"], a["owner"]) for a in apps] == [(app, "collaborator", owner_email)]
    assert "only the owner" in other.fails(1, "apps:destroy", "-a", app, "--confirm", app)
