"""Hostile and broken pushes: each gets a clear error, the repository stays
exactly as it was, and the server keeps serving."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.conftest import ShipwayServer
from tests.gitd.gitkit import Pusher, output, remote_refs, run

ZERO = "0" * 40


def pkt(data: bytes | None) -> bytes:
    return b"0000" if data is None else b"%04x" % (len(data) + 4) + data


@pytest.fixture
def pusher(shipway_server: ShipwayServer, tmp_path: Path) -> Pusher:
    return Pusher(shipway_server, shipway_server.signup(), tmp_path / "owner")


def repo_files(p: Pusher, app: str) -> dict[str, int]:
    root = p.server.data_dir / "repos" / f"{app}.git"
    return {str(f.relative_to(root)): f.stat().st_size
            for f in root.rglob("*") if f.is_file() and "logs" not in f.parts}


def pack_of(p: Pusher, repo: Path, revs: str, thin: bool = False) -> bytes:
    args = ["git", "pack-objects", "--stdout", "--revs", "-q"] + (["--thin"] if thin else [])
    return run(args, cwd=repo, env=p.env(), input=revs.encode()).stdout


def post_receive(p: Pusher, app: str, body: bytes) -> requests.Response:
    return requests.post(f"{p.http_url(app)}/git-receive-pack", data=body, timeout=60,
                         auth=(p.user.email, p.user.api_key),
                         headers={"Content-Type": "application/x-git-receive-pack-request"})


def command(old: str, new: str, ref: str = "refs/heads/feature") -> bytes:
    return pkt(f"{old} {new} {ref}\0report-status side-band-64k agent=test\n".encode()) + pkt(None)


def seeded(p: Pusher) -> tuple[str, Path]:
    """An app whose repo already holds one pushed branch."""
    app = p.create_app()
    repo = p.new_repo(files={"big.txt": "".join(f"line {i} of a long file\n" for i in range(3000))})
    p.git("push", p.ssh_url(app), "main:base", cwd=repo)
    return app, repo


def assert_still_serving(p: Pusher, app: str, repo: Path) -> None:
    sha = p.commit(repo, "after.txt")
    p.git("push", p.ssh_url(app), "main:after", cwd=repo)
    assert remote_refs(p, p.http_url(app))["refs/heads/after"] == sha


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "garbage"])
def test_broken_pack_is_refused_and_repo_unchanged(pusher: Pusher, damage: str) -> None:
    app, repo = seeded(pusher)
    new = pusher.commit(repo, "new.bin", os.urandom(20000).hex())
    pack = pack_of(pusher, repo, f"{new}\n^{pusher.head(repo, 'HEAD~1')}\n")
    if damage == "truncated":
        pack = pack[: len(pack) // 2]
    elif damage == "corrupt":
        middle = len(pack) // 2
        flipped = bytes(b ^ 0xFF for b in pack[middle:middle + 64])
        pack = pack[:middle] + flipped + pack[middle + 64:]
    else:
        pack = b"PACK" + os.urandom(500)
    before = repo_files(pusher, app)
    r = post_receive(pusher, app, command(ZERO, new) + pack)
    assert b"unpack ok" not in r.content
    assert b"unpack " in r.content and b"ng refs/heads/feature" in r.content
    assert "refs/heads/feature" not in remote_refs(pusher, pusher.ssh_url(app))
    assert repo_files(pusher, app) == before
    assert_still_serving(pusher, app, repo)


def test_thin_pack_with_missing_base_is_refused(pusher: Pusher) -> None:
    app, repo = seeded(pusher)
    # A commit the server never saw, then a thin pack against it.
    unseen = pusher.commit(repo, "big.txt", "".join(f"line {i} changed\n" for i in range(3000)))
    new = pusher.commit(repo, "big.txt", "".join(f"line {i} changed\n" for i in range(3001)))
    pack = pack_of(pusher, repo, f"{new}\n^{unseen}\n", thin=True)
    before = repo_files(pusher, app)
    r = post_receive(pusher, app, command(ZERO, new) + pack)
    assert b"unpack ok" not in r.content and b"ng refs/heads/feature" in r.content
    assert repo_files(pusher, app) == before
    assert_still_serving(pusher, app, repo)


def test_pack_without_the_pushed_commit_is_refused(pusher: Pusher) -> None:
    app, repo = seeded(pusher)
    new = pusher.commit(repo, "x.txt", "x\n")
    empty_pack = pack_of(pusher, repo, "")
    r = post_receive(pusher, app, command(ZERO, new) + empty_pack)
    assert b"ng refs/heads/feature missing necessary objects" in r.content
    assert "refs/heads/feature" not in remote_refs(pusher, pusher.ssh_url(app))


def test_stale_old_value_is_refused(pusher: Pusher) -> None:
    app, repo = seeded(pusher)
    base = pusher.head(repo)
    new = pusher.commit(repo, "y.txt", "y\n")
    pack = pack_of(pusher, repo, f"{new}\n^{base}\n")
    r = post_receive(pusher, app, command("1" * 40, new, "refs/heads/base") + pack)
    assert b"ng refs/heads/base stale info" in r.content
    assert remote_refs(pusher, pusher.ssh_url(app))["refs/heads/base"] == base


@pytest.mark.parametrize("body", [b"zzzz-not-a-pkt-line", b"0030" + b"x" * 10,
                                  pkt(b"nonsense here\n") + pkt(None)])
def test_malformed_pkt_lines_over_http(pusher: Pusher, body: bytes) -> None:
    app, repo = seeded(pusher)
    before = repo_files(pusher, app)
    r = post_receive(pusher, app, body)
    assert r.status_code == 400, r.text
    assert "shipway:" in r.text
    assert repo_files(pusher, app) == before
    assert_still_serving(pusher, app, repo)


def test_malformed_pkt_lines_over_ssh(pusher: Pusher) -> None:
    app, repo = seeded(pusher)
    base = ["ssh", "-i", str(pusher.key), "-o", "IdentitiesOnly=yes", "-o",
            "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
            "LogLevel=ERROR", "-p", str(pusher.server.ssh_port), "git@127.0.0.1",
            f"git-receive-pack '{app}.git'"]
    for junk in (b"zzzz-garbage", pkt(b"too few fields\n") + pkt(None), b"00"):
        proc = subprocess.run(base, input=junk, capture_output=True, timeout=30)
        assert proc.returncode != 0
        assert b"shipway: malformed push" in proc.stderr, proc.stderr
    assert_still_serving(pusher, app, repo)


@pytest.mark.parametrize("body_limit, size, urls, said", [
    # Just over the repository limit: receive-pack's own message, both ways.
    (None, 600_000, ("ssh_url", "http_url"), "exceeds the repository size limit"),
    # Over the repository limit plus the API's body limit, the HTTP body is
    # not even stored: a bare 413.
    (100_000, 900_000, ("http_url",), "413"),
])
def test_oversized_push_is_refused(make_server, tmp_path: Path, body_limit: int | None,
                                   size: int, urls: tuple[str, ...], said: str) -> None:
    env = {"SHIPWAY_LIMIT_REPO_BYTES": str(400_000)}
    if body_limit:
        env["SHIPWAY_LIMIT_REQUEST_BODY_BYTES"] = str(body_limit)
    server = make_server(env=env)
    p = Pusher(server, server.signup(), tmp_path / "owner")
    app = p.create_app()
    repo = p.new_repo()
    p.git("push", p.ssh_url(app), "main:small", cwd=repo)
    before = repo_files(p, app)
    p.commit(repo, "huge.bin", os.urandom(size).hex())
    for url in urls:
        proc = p.git("push", getattr(p, url)(app), "main:huge", cwd=repo, check=False)
        assert proc.returncode != 0
        assert said in output(proc), output(proc)
        assert repo_files(p, app) == before
    p.git("reset", "-q", "--hard", "HEAD~1", cwd=repo)
    p.commit(repo, "tiny.txt", "tiny\n")
    p.git("push", p.http_url(app), "main:small", cwd=repo)
