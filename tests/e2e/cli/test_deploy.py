"""The CLI verbs that need a running app: `create` inside a repo, a plain
`git push shipway main` authenticated by the ~/.netrc that `login` wrote,
then ps, ps:scale, ps:restart, apps:info, releases, releases:rollback,
config:set (a new release) and apps:destroy, against real containers."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import requests

from tests.cli.conftest import Cli
from tests.conftest import ROOT, unique

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def git(cli: Cli, repo, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {"HOME": str(cli.home), "GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=900, check=check)


def running(cli: Cli, repo) -> list[dict]:
    return [r for r in cli.json("ps", cwd=repo)["replicas"] if r["state"] == "running"]


def page(cli: Cli, app: str) -> str:
    r = requests.get(f"http://127.0.0.1:{cli.server.router_port}/",
                     headers={"Host": f"{app}.localhost"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.text


def test_push_then_manage_with_the_cli(shipway_server, stack_image, logged_in: Cli,
                                       tmp_path) -> None:
    cli = logged_in
    repo = tmp_path / "src"
    shutil.copytree(ROOT / "examples" / "procfile", repo)
    git(cli, repo, "init", "-q", "-b", "main")
    git(cli, repo, "add", "-A")
    git(cli, repo, "commit", "-q", "-m", "first")
    app = unique("dep")
    cli.ok("create", app, cwd=repo)

    # Plain git, no credentials given: ~/.netrc from signup authenticates.
    push = git(cli, repo, "push", "shipway", "main", check=False)
    assert push.returncode == 0, push.stderr
    info = cli.json("apps:info", cwd=repo)
    assert info["version"] == 1 and info["release"]["status"] == "succeeded"
    assert "v1 (succeeded)" in cli.ok("apps:info", cwd=repo).stdout
    assert "(release v1)" in page(cli, app)

    [replica] = running(cli, repo)
    assert replica["version"] == 1 and replica["process_type"] == "web"
    assert 0 <= replica["uptime_seconds"] < 600  # running since this push
    shown = cli.ok("ps", cwd=repo).stdout
    header, row = shown.splitlines()[2:4]
    assert header.split()[-1] == "UP" and row.split()[-1][-1] in "smhd"
    assert replica["container_id"][:12] in row

    cli.ok("ps:scale", "--replicas", "2", cwd=repo)
    assert len(running(cli, repo)) == 2
    before = {r["container_id"] for r in running(cli, repo)}
    cli.ok("ps:restart", cwd=repo)
    after = {r["container_id"] for r in running(cli, repo)}
    assert len(after) == 2 and not after & before

    done = cli.ok("config:set", "GREETING=bonjour", "--json", cwd=repo)
    data = json.loads(done.stdout)
    assert data["release"]["version"] == 2 and data["release"]["status"] == "succeeded"
    # The deploy's progress streamed to stderr, the same lines as the answer's log.
    assert data["log"] and [line.strip() for line in done.stderr.splitlines()] == \
        [line.strip() for line in data["log"]]
    assert "(release v2)" in page(cli, app)

    rolled = cli.json("releases:rollback", cwd=repo)["release"]
    assert rolled["version"] == 3 and rolled["status"] == "succeeded"
    text = page(cli, app)
    assert "(release v3)" in text and "bonjour" not in text  # v1's code and config
    releases = cli.json("releases", cwd=repo)
    assert [r["version"] for r in releases] == [3, 2, 1]
    assert "v3" in cli.ok("releases", cwd=repo).stdout.splitlines()[1]
    assert "Rolled back" in cli.ok("releases:rollback", "v2", cwd=repo).stdout
    assert "(release v4) bonjour" in page(cli, app)

    # The API itself, streaming: progress objects, then the result.
    key = (cli.home / ".netrc").read_text().split()[-1]
    r = cli.server.api(key).put(f"/api/apps/{app}/formation", json={"web": 1},
                                headers={"Accept": "application/x-ndjson"})
    assert r.status_code == 200
    objects = [json.loads(line) for line in r.text.splitlines()]
    if len(objects) > 1:  # scaling down may have nothing to report
        assert r.headers["Content-Type"] == "application/x-ndjson"
        assert all("log" in o for o in objects[:-1])
        assert objects[-1]["result"]["formation"] == {"web": 1}
    else:
        assert objects[0]["formation"] == {"web": 1}

    cli.ok("apps:destroy", "--confirm", app, cwd=repo)
    assert app not in [a["name"] for a in cli.json("apps")]
