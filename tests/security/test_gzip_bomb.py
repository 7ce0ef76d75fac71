"""Issue 14, finding 3: a gzip bomb on git over HTTP. A small gzip body that
inflates to hundreds of MB, POSTed to a real app's git-upload-pack and
git-receive-pack, gets a 4xx answer, and the server's peak memory (VmHWM)
grows by less than RSS_BOUND (the old code grew by the inflated size)."""
from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import requests

from tests.conftest import ShipwayServer
from tests.gitd.gitkit import Pusher

INFLATED = 300 * 1024 * 1024  # what the bomb inflates to
RSS_BOUND = 80 * 1024 * 1024  # the server's allowed peak growth


def memory(pid: int) -> dict[str, int]:
    """VmHWM (peak) and VmRSS of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) * 1024
    return out


def gzip_zeros(size: int) -> bytes:
    """A gzip stream of `size` zero bytes, made in chunks (~300 KB)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [z.compress(block) for _ in range(size // len(block))]
    parts.append(z.flush())
    return b"".join(parts)


@pytest.fixture
def app_server(make_server, tmp_path: Path) -> tuple[ShipwayServer, Pusher, str]:
    server = make_server()
    pusher = Pusher(server, server.signup(), tmp_path / "home", register_key=False)
    app = pusher.create_app()
    repo = pusher.new_repo()
    # A branch that does not deploy: the app's repository exists, no build.
    pusher.git("push", "-q", pusher.http_url(app), "main:refs/heads/stored", cwd=repo)
    return server, pusher, app


@pytest.mark.parametrize("service", ["git-upload-pack", "git-receive-pack"])
def test_gzip_bomb_is_refused_with_bounded_memory(app_server, service: str) -> None:
    server, pusher, app = app_server
    bomb = gzip_zeros(INFLATED)
    assert len(bomb) < 400 * 1024
    assert server.proc is not None
    before = memory(server.proc.pid)
    r = requests.post(f"{server.url}/{app}.git/{service}", data=bomb, timeout=120,
                      auth=(pusher.user.email, pusher.user.api_key),
                      headers={"Content-Encoding": "gzip",
                               "Content-Type": f"application/x-{service}-request"})
    after = memory(server.proc.pid)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text
    growth = after["VmHWM"] - before["VmHWM"]
    assert growth < RSS_BOUND, f"peak RSS grew by {growth / 2**20:.0f} MiB"
    # The server still serves git.
    assert pusher.git("ls-remote", pusher.http_url(app)).returncode == 0


def test_upload_pack_bomb_is_a_413(app_server) -> None:
    server, pusher, app = app_server
    r = requests.post(f"{server.url}/{app}.git/git-upload-pack", data=gzip_zeros(INFLATED),
                      auth=(pusher.user.email, pusher.user.api_key), timeout=120,
                      headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert "decompressed" in r.text


def test_gzip_fetch_still_works(app_server, tmp_path: Path) -> None:
    """git gzips its fetch negotiation: a real clone over HTTP still works."""
    _server, pusher, app = app_server
    done = pusher.git("clone", "-q", "-b", "stored", pusher.http_url(app),
                      str(tmp_path / "clone"))
    assert done.returncode == 0
    assert (tmp_path / "clone" / "README").read_text() == "hello\n"
