"""Issue 14, finding 4: a blob bomb. A 1 GB file of zeros is a push of
about 1 MB; it is refused at receive (over the one-file limit) with a clear
"unpack" reason, the branch does not move and the server's peak memory stays
bounded. (The whole-tree limit, with a real build, is
tests/e2e/security/test_blob_bomb.py.)"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.gitd.gitkit import Pusher, output, remote_refs
from tests.security.test_gzip_bomb import memory

pytestmark = [pytest.mark.slow]

RSS_BOUND = 100 * 1024 * 1024
EXAMPLE = {f.name: f.read_text() for f in (ROOT / "examples" / "procfile").iterdir()
           if f.is_file()}


def sparse_file(path: Path, size: int, head: bytes = b"") -> None:
    """A file of `size` bytes, zeros after `head`, that takes no disk: git
    add streams it (over core.bigFileThreshold) into a ~1 MB pack."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)


def test_one_gigabyte_blob_is_refused_at_receive(make_server, tmp_path: Path) -> None:
    server = make_server()
    pusher = Pusher(server, server.signup(), tmp_path / "home", register_key=False)
    app = pusher.create_app()
    repo = pusher.new_repo(files=EXAMPLE)
    url = pusher.http_url(app)
    pusher.git("push", "-q", url, "main:refs/heads/stored", cwd=repo)
    before_head = pusher.head(repo)
    sparse_file(repo / "big.bin", 1024 ** 3)
    pusher.git("add", "big.bin", cwd=repo)
    pusher.git("commit", "-q", "-m", "bomb", cwd=repo)
    pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs"], cwd=repo,
                          input=f"HEAD^{before_head}".encode(), capture_output=True,
                          env=pusher.env())
    assert len(pack.stdout) < 5 * 1024 * 1024  # the push is small

    assert server.proc is not None
    before = memory(server.proc.pid)
    done = pusher.git("push", url, "main", cwd=repo, check=False)
    after = memory(server.proc.pid)
    text = output(done)
    assert done.returncode != 0, text
    assert "unpack failed" in text and "big.bin" in text and "over the limit" in text, text
    assert "refs/heads/main" not in remote_refs(pusher, url)
    growth = after["VmHWM"] - before["VmHWM"]
    assert growth < RSS_BOUND, f"peak RSS grew by {growth / 2**20:.0f} MiB"
