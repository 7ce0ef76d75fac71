"""Pushes that build, release and deploy for real (builder, slug store,
runner, router): push, re-push, force-push, hot option, the deployed branch,
a failing build on a live app, concurrent pushes, live streaming."""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, ShipwayServer
from tests.gitd.gitkit import Pusher, output, remote_refs, run

pytestmark = [pytest.mark.slow, pytest.mark.docker]

EXAMPLE = {f.name: f.read_text() for f in (ROOT / "examples" / "procfile").iterdir()
           if f.is_file()}


@pytest.fixture
def pusher(shipway_server: ShipwayServer, tmp_path: Path) -> Pusher:
    return Pusher(shipway_server, shipway_server.signup(), tmp_path / "owner")


def served(p: Pusher, app: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{p.server.router_port}/",
                        headers={"Host": f"{app}.localhost"}, timeout=10)


def releases(p: Pusher, app: str) -> list[dict]:
    r = p.user.api.get(f"/api/apps/{app}/releases")
    assert r.status_code == 200, r.text
    return r.json()


def timed_push(p: Pusher, repo: Path, *args: str) -> tuple[int, list[tuple[float, str]]]:
    """Run `git push`, timestamping each line of its output as it arrives."""
    proc = subprocess.Popen(["git", "push", "--progress", *args], cwd=repo, env=p.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    lines = []
    for raw in iter(proc.stderr.readline, b""):
        lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))
    return proc.wait(120), lines


def test_push_repush_force_push_and_delete_main(pusher: Pusher) -> None:
    app = pusher.create_app()
    repo = pusher.new_repo(files=EXAMPLE)
    first = pusher.git("push", pusher.ssh_url(app), "main", cwd=repo)
    text = output(first)
    assert "-----> Released v1" in text
    assert f"-----> {app} is live at http://{app}.localhost:{pusher.server.router_port}/" in text
    assert remote_refs(pusher, pusher.ssh_url(app))["refs/heads/main"] == pusher.head(repo)
    assert served(pusher, app).status_code == 200

    second = pusher.commit(repo, "notes.txt", "v2\n")
    assert "-----> Released v2" in output(pusher.git("push", pusher.http_url(app), "main",
                                                     cwd=repo))
    assert remote_refs(pusher, pusher.http_url(app))["refs/heads/main"] == second

    pusher.git("reset", "-q", "--hard", "HEAD~1", cwd=repo)
    rewritten = pusher.commit(repo, "notes.txt", "rewritten\n")
    plain = pusher.git("push", pusher.http_url(app), "main", cwd=repo, check=False)
    assert plain.returncode != 0 and "[rejected]" in output(plain)
    forced = pusher.git("push", "--force", pusher.http_url(app), "main", cwd=repo)
    assert "-----> Released v3" in output(forced)
    assert remote_refs(pusher, pusher.ssh_url(app))["refs/heads/main"] == rewritten

    gone = pusher.git("push", pusher.ssh_url(app), ":main", cwd=repo, check=False)
    assert gone.returncode != 0
    assert "(cannot delete the deployed branch)" in output(gone)
    assert remote_refs(pusher, pusher.ssh_url(app))["refs/heads/main"] == rewritten

    builds = pusher.user.api.get(f"/api/apps/{app}/builds").json()
    assert sorted(b["status"] for b in builds) == ["succeeded"] * 3


def test_failing_build_on_a_live_app_leaves_main_and_release(pusher: Pusher) -> None:
    app = pusher.create_app()
    repo = pusher.new_repo(files=EXAMPLE)
    pusher.git("push", pusher.ssh_url(app), "main", cwd=repo)
    live = pusher.head(repo)
    for name in EXAMPLE:
        (repo / name).unlink()
    pusher.commit(repo, "notes.txt", "nothing to build here\n")
    proc = pusher.git("push", pusher.ssh_url(app), "main", cwd=repo, check=False)
    assert proc.returncode != 0
    assert "! [remote rejected] main -> main (" in output(proc)
    assert remote_refs(pusher, pusher.ssh_url(app))["refs/heads/main"] == live
    assert [r["version"] for r in releases(pusher, app) if r["status"] == "succeeded"] == [1]
    assert served(pusher, app).status_code == 200


def test_first_hot_push_is_deployed_with_a_restart(pusher: Pusher) -> None:
    """Nothing runs yet to upgrade in place (tests/e2e/test_hot_upgrade.py
    has the in-place upgrade itself)."""
    app = pusher.create_app()
    repo = pusher.new_repo(files=EXAMPLE)
    proc = pusher.git("push", "-o", "hot", pusher.ssh_url(app), "main", cwd=repo)
    assert "Hot upgrade not possible (nothing is running): restarting instead" in output(proc)
    assert "-----> Released v1" in output(proc) and "is live at" in output(proc)


@pytest.mark.parametrize("transport", ["ssh", "http"])
def test_progress_streams_while_the_push_runs(pusher: Pusher, transport: str) -> None:
    app = pusher.create_app()
    repo = pusher.new_repo(files=EXAMPLE)
    url = pusher.ssh_url(app) if transport == "ssh" else pusher.http_url(app)
    code, lines = timed_push(pusher, repo, url, "main")
    assert code == 0, lines
    at = {text: t for t, text in lines}
    building = next(t for text, t in at.items() if "-----> Building" in text)
    live = next(t for text, t in at.items() if "is live at" in text)
    # The build line reached the pusher well before the deploy finished.
    assert live - building > 0.5, lines


def test_concurrent_pushes_one_app_one_rejected(pusher: Pusher) -> None:
    app = pusher.create_app()
    repo_a = pusher.new_repo("a", files=EXAMPLE)
    repo_b = pusher.new_repo("b", files={**EXAMPLE, "extra.txt": "b\n"})
    proc_a = subprocess.Popen(["git", "push", pusher.ssh_url(app), "main"], cwd=repo_a,
                              env=pusher.env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    assert proc_a.stderr is not None
    seen = []
    for raw in iter(proc_a.stderr.readline, b""):
        seen.append(raw.decode(errors="replace"))
        if "-----> Building" in seen[-1]:
            break
    started = time.monotonic()
    b = pusher.git("push", pusher.http_url(app), "main", cwd=repo_b, check=False)
    assert b.returncode != 0
    assert f"(another push to {app} is in progress)" in output(b)
    assert time.monotonic() - started < 10
    rest = proc_a.stderr.read().decode(errors="replace")
    assert proc_a.wait(120) == 0, "".join(seen) + rest
    assert "-----> Released v1" in rest
    assert remote_refs(pusher, pusher.ssh_url(app))["refs/heads/main"] == pusher.head(repo_a)
    run(["git", "fsck", "--strict"], cwd=pusher.server.data_dir / "repos" / f"{app}.git")


def test_concurrent_pushes_to_different_apps_both_deploy(pusher: Pusher) -> None:
    apps = [pusher.create_app(), pusher.create_app()]
    repos = [pusher.new_repo(f"r{i}", files={**EXAMPLE, "n.txt": f"{i}\n"}) for i in range(2)]
    results: dict[int, subprocess.CompletedProcess] = {}

    def push(i: int) -> None:
        url = pusher.ssh_url(apps[i]) if i == 0 else pusher.http_url(apps[i])
        results[i] = pusher.git("push", url, "main", cwd=repos[i], check=False)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for i in range(2):
        assert results[i].returncode == 0, output(results[i])
        assert "-----> Released v1" in output(results[i])
        assert served(pusher, apps[i]).status_code == 200


def test_pusher_hanging_up_mid_build_does_not_break_the_deploy(pusher: Pusher) -> None:
    app = pusher.create_app()
    repo = pusher.new_repo(files=EXAMPLE)
    proc = subprocess.Popen(["git", "push", pusher.ssh_url(app), "main"], cwd=repo,
                            env=pusher.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stderr is not None
    for raw in iter(proc.stderr.readline, b""):
        if b"-----> Building" in raw:
            break
    import os
    import signal
    os.killpg(proc.pid, signal.SIGKILL)  # git and its ssh: the pusher is gone
    proc.wait(10)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = [r for r in releases(pusher, app) if r["status"] in ("succeeded", "failed")]
        if done:
            break
        time.sleep(1)
    assert [r["status"] for r in releases(pusher, app)] == ["succeeded"]
    assert served(pusher, app).status_code == 200
    for _ in range(20):  # the ref moves right after the deploy
        if remote_refs(pusher, pusher.ssh_url(app)).get("refs/heads/main") == pusher.head(repo):
            break
        time.sleep(0.5)
    assert remote_refs(pusher, pusher.ssh_url(app))["refs/heads/main"] == pusher.head(repo)
