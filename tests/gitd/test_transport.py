"""The real git client and OpenSSH against a running shipway server: auth,
access, branches, clone back, push options, the HTTP headers."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ShipwayServer, unique
from tests.gitd.gitkit import Pusher, output, remote_refs, run

TRANSPORTS = ["ssh", "http"]


@pytest.fixture
def pusher(shipway_server: ShipwayServer, tmp_path: Path) -> Pusher:
    return Pusher(shipway_server, shipway_server.signup(), tmp_path / "owner")


def url(p: Pusher, app: str, transport: str) -> str:
    return p.ssh_url(app) if transport == "ssh" else p.http_url(app)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_branch_push_repush_force_fetch_and_clone(pusher: Pusher, transport: str) -> None:
    app = pusher.create_app()
    repo = pusher.new_repo(files={"README": "one\n", "src/app.py": "print('hi')\n"})
    remote = url(pusher, app, transport)

    first = pusher.git("push", remote, "main:feature", cwd=repo)
    assert "branch feature stored, not deployed (only main/master deploy)" in output(first)
    assert remote_refs(pusher, remote)["refs/heads/feature"] == pusher.head(repo)

    second = pusher.commit(repo, "two.txt", "two\n")
    pusher.git("push", remote, "main:feature", cwd=repo)
    assert remote_refs(pusher, remote)["refs/heads/feature"] == second

    # Rewrite history: plain push is refused by the client, --force goes through.
    pusher.git("reset", "-q", "--hard", "HEAD~1", cwd=repo)
    rewritten = pusher.commit(repo, "other.txt", "rewritten\n")
    plain = pusher.git("push", remote, "main:feature", cwd=repo, check=False)
    assert plain.returncode != 0 and "non-fast-forward" in output(plain) or \
        "[rejected]" in output(plain)
    assert remote_refs(pusher, remote)["refs/heads/feature"] == second
    pusher.git("push", "--force", remote, "main:feature", cwd=repo)
    assert remote_refs(pusher, remote)["refs/heads/feature"] == rewritten

    clone = pusher.home / f"clone-{transport}"
    pusher.git("clone", "-q", "-b", "feature", remote, str(clone))
    assert (clone / "other.txt").read_text() == "rewritten\n"
    assert (clone / "src/app.py").read_text() == "print('hi')\n"
    assert pusher.head(clone) == rewritten
    run(["git", "fsck", "--strict"], cwd=clone)

    pusher.commit(repo, "three.txt")
    pusher.git("push", remote, "main:feature", cwd=repo)
    pusher.git("fetch", "-q", "origin", cwd=clone)
    assert pusher.head(clone, "origin/feature") == pusher.head(repo)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_deploy_branch_push_that_fails_leaves_ref_unmoved(pusher: Pusher, transport: str) -> None:
    """No Procfile and nothing a buildpack detects: whatever the build step
    says, the push is rejected after the output and main does not move."""
    app = pusher.create_app()
    repo = pusher.new_repo(files={"notes.txt": "nothing to build\n"})
    remote = url(pusher, app, transport)
    sha = pusher.head(repo)
    proc = pusher.git("push", remote, "main", cwd=repo, check=False)
    text = output(proc)
    assert proc.returncode != 0
    assert f"remote: -----> Building {app} (main {sha[:7]})" in text
    assert "! [remote rejected] main -> main (" in text
    # The reason comes after the pipeline's output.
    assert text.index("-----> Building") < text.index("[remote rejected]")
    assert "refs/heads/main" not in remote_refs(pusher, remote)


def test_push_options_and_http_headers(pusher: Pusher) -> None:
    app = pusher.create_app()
    repo = pusher.new_repo()
    hot_line = "Hot upgrade requested"
    plain = pusher.git("push", pusher.ssh_url(app), "main", cwd=repo, check=False)
    assert hot_line not in output(plain)
    ssh_hot = pusher.git("push", "-o", "hot", pusher.ssh_url(app), "main", cwd=repo, check=False)
    assert hot_line in output(ssh_hot)
    http_hot = pusher.git("-c", "http.extraheader=Shipway-Hot: true", "push",
                          pusher.http_url(app), "main", cwd=repo, check=False)
    assert hot_line in output(http_hot)
    http_opt = pusher.git("push", "-o", "hot", pusher.http_url(app), "main", cwd=repo,
                          check=False)
    assert hot_line in output(http_opt)


def test_http_needs_credentials_netrc_works_wrong_key_refused(
        shipway_server: ShipwayServer, tmp_path: Path) -> None:
    owner = Pusher(shipway_server, shipway_server.signup(), tmp_path / "owner")
    app = owner.create_app()
    repo = owner.new_repo()
    owner.git("push", owner.http_url(app), "main:feature", cwd=repo)  # via ~/.netrc

    (owner.home / ".netrc").unlink()
    none = owner.git("push", owner.http_url(app), "main:other", cwd=repo, check=False)
    assert none.returncode != 0
    assert "could not read Username" in output(none) or "Authentication failed" in output(none)

    # A wrong API key: git shows the server's refusal.
    login = owner.user.email.replace("@", "%40")
    wrong_url = owner.http_url(app).replace("http://", f"http://{login}:not-the-key@")
    wrong = owner.git("push", wrong_url, "main:other", cwd=repo, check=False)
    assert wrong.returncode != 0 and "Authentication failed" in output(wrong)
    right_url = owner.http_url(app).replace("http://", f"http://{login}:{owner.user.api_key}@")
    owner.git("push", right_url, "main:other", cwd=repo)
    assert "refs/heads/other" in remote_refs(owner, owner.ssh_url(app))


def test_http_401_carries_basic_challenge(shipway_server: ShipwayServer) -> None:
    import requests

    user = shipway_server.signup()
    for auth in (None, (user.email, "wrong-key"), ("nobody@example.com", user.api_key)):
        r = requests.get(f"{shipway_server.url}/nope.git/info/refs", auth=auth,
                         params={"service": "git-upload-pack"}, timeout=10)
        assert r.status_code == 401, auth
        assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    r = requests.get(f"{shipway_server.url}/nope.git/info/refs", auth=(user.email, user.api_key),
                     params={"service": "git-upload-pack"}, timeout=10)
    assert r.status_code == 404


def test_unregistered_ssh_key_is_refused(shipway_server: ShipwayServer, tmp_path: Path) -> None:
    owner = Pusher(shipway_server, shipway_server.signup(), tmp_path / "owner")
    app = owner.create_app()
    stranger_key = Pusher(shipway_server, owner.user, tmp_path / "nokey", register_key=False)
    repo = stranger_key.new_repo()
    proc = stranger_key.git("push", stranger_key.ssh_url(app), "main:feature", cwd=repo,
                            check=False)
    assert proc.returncode != 0 and "Permission denied (publickey)" in output(proc)


def test_collaborator_may_push_and_fetch_stranger_sees_not_found(
        shipway_server: ShipwayServer, tmp_path: Path) -> None:
    owner = Pusher(shipway_server, shipway_server.signup(), tmp_path / "owner")
    collab = Pusher(shipway_server, shipway_server.signup(), tmp_path / "collab")
    stranger = Pusher(shipway_server, shipway_server.signup(), tmp_path / "stranger")
    app = owner.create_app()
    r = owner.user.api.post(f"/api/apps/{app}/collaborators", json={"email": collab.user.email})
    assert r.status_code == 201, r.text

    repo = collab.new_repo()
    collab.git("push", collab.ssh_url(app), "main:from-collab", cwd=repo)
    collab.git("push", collab.http_url(app), "main:from-collab-http", cwd=repo)
    assert "refs/heads/from-collab" in remote_refs(owner, owner.http_url(app))

    missing = unique("missing")
    for make_url in (stranger.ssh_url, stranger.http_url):
        answers = []
        for name in (app, missing):
            push = stranger.git("push", make_url(name), "main:x", cwd=repo, check=False)
            fetch = stranger.git("ls-remote", make_url(name), check=False)
            assert push.returncode != 0 and fetch.returncode != 0
            answers.append((output(push).replace(name, "APP"), output(fetch).replace(name, "APP")))
        assert answers[0] == answers[1]  # no way to tell "exists" from "missing"
    assert "refs/heads/x" not in remote_refs(owner, owner.ssh_url(app))


def test_ssh_gives_no_shell_and_only_git_commands(pusher: Pusher) -> None:
    app = pusher.create_app()
    base = ["ssh", "-i", str(pusher.key), "-o", "IdentitiesOnly=yes", "-o",
            "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
            "LogLevel=ERROR", "-p", str(pusher.server.ssh_port), "git@127.0.0.1"]
    shell = subprocess.run(base + ["-T"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert shell.returncode != 0 and b"does not provide shell access" in shell.stderr
    for cmd in ("ls -la", f"git-receive-pack '../{app}.git'", "sh -c id",
                f"git-upload-pack '{app}.git' extra"):
        proc = subprocess.run(base + [cmd], capture_output=True, timeout=30,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode != 0, cmd
        assert b"unknown command" in proc.stderr or b"not found" in proc.stderr, cmd
    # A leading "/" is fine.
    ok = subprocess.run(base + [f"git-upload-pack '/{app}.git'"], capture_output=True,
                        timeout=30, input=b"0000")
    assert ok.returncode == 0, ok.stderr


def test_delete_branch_and_refs_outside_heads(pusher: Pusher) -> None:
    app = pusher.create_app()
    repo = pusher.new_repo()
    remote = pusher.ssh_url(app)
    pusher.git("push", remote, "main:feature", "main:doomed", cwd=repo)
    deleted = pusher.git("push", remote, ":doomed", cwd=repo)
    assert "branch doomed deleted" in output(deleted)
    refs = remote_refs(pusher, remote)
    assert "refs/heads/doomed" not in refs and "refs/heads/feature" in refs

    for target in ("refs/tags/v1", "refs/notes/x"):
        proc = pusher.git("push", remote, f"main:{target}", cwd=repo, check=False)
        assert proc.returncode != 0
        assert "[remote rejected]" in output(proc)
        assert "(only branches can be pushed)" in output(proc)
        assert target not in remote_refs(pusher, remote)


def test_destroying_the_app_removes_its_repo(pusher: Pusher) -> None:
    app = pusher.create_app()
    repo = pusher.new_repo()
    pusher.git("push", pusher.ssh_url(app), "main:feature", cwd=repo)
    path = pusher.server.data_dir / "repos" / f"{app}.git"
    assert (path / "HEAD").exists()
    r = pusher.user.api.delete(f"/api/apps/{app}")
    assert r.status_code in (200, 204), r.text
    assert not path.exists()


def test_concurrent_pushes_different_apps_and_same_branch(
        shipway_server: ShipwayServer, tmp_path: Path) -> None:
    """Two apps pushed at once are both served; two pushes racing for one
    branch never corrupt it: the ref ends at one of the two commits."""
    import os
    import threading

    p = Pusher(shipway_server, shipway_server.signup(), tmp_path / "owner")
    apps = [p.create_app(), p.create_app()]
    repos = [p.new_repo(f"r{i}", files={f"blob{j}.bin": os.urandom(300_000).hex()
                                        for j in range(4)}) for i in range(2)]
    results: dict[int, subprocess.CompletedProcess] = {}

    def push(i: int, app: str, branch: str) -> None:
        url = p.ssh_url(app) if i % 2 == 0 else p.http_url(app)
        results[i] = p.git("push", "--force", url, f"main:{branch}", cwd=repos[i % 2],
                           check=False)

    threads = [threading.Thread(target=push, args=(i, apps[i], "feature")) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i in range(2):
        assert results[i].returncode == 0, output(results[i])
        assert remote_refs(p, p.ssh_url(apps[i]))["refs/heads/feature"] == p.head(repos[i])

    results.clear()
    threads = [threading.Thread(target=push, args=(i, apps[0], "race")) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert any(r.returncode == 0 for r in results.values())
    final = remote_refs(p, p.ssh_url(apps[0]))["refs/heads/race"]
    assert final in (p.head(repos[0]), p.head(repos[1]))
    run(["git", "fsck", "--strict"], cwd=shipway_server.data_dir / "repos" / f"{apps[0]}.git")
