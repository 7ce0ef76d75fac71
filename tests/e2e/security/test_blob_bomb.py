"""Issue 14, finding 4: a blob bomb. With lowered limits, the whole-tree
limit fails the build with a clear message, and a tree just under it builds
and deploys (Docker). The 1 GB blob refused at receive is
tests/security/test_blob_bomb.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.gitd.gitkit import Pusher, output, remote_refs
from tests.security.test_blob_bomb import EXAMPLE, sparse_file

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_tree_limit_refuses_the_build_and_just_under_builds(make_server,
                                                            tmp_path: Path) -> None:
    mib = 1024 * 1024
    server = make_server(env={"SHIPWAY_LIMIT_BLOB_BYTES": str(5 * mib),
                              "SHIPWAY_LIMIT_SOURCE_TREE_BYTES": str(20 * mib)})
    pusher = Pusher(server, server.signup(), tmp_path / "home", register_key=False)
    app = pusher.create_app()
    repo = pusher.new_repo(files=EXAMPLE)
    url = pusher.http_url(app)
    for i in range(4):  # 18 MiB: under the tree limit, each under the file limit
        sparse_file(repo / f"data{i}.bin", 4 * mib + mib // 2, f"file {i}\n".encode())
    pusher.git("add", "-A", cwd=repo)
    pusher.git("commit", "-q", "-m", "just under", cwd=repo)
    done = pusher.git("push", url, "main", cwd=repo, check=False)
    assert done.returncode == 0, output(done)
    assert remote_refs(pusher, url)["refs/heads/main"] == pusher.head(repo)

    sparse_file(repo / "data4.bin", 4 * mib + mib // 2, b"file 4\n")  # 22.5 MiB
    pusher.git("add", "-A", cwd=repo)
    pusher.git("commit", "-q", "-m", "over", cwd=repo)
    done = pusher.git("push", url, "main", cwd=repo, check=False)
    text = output(done)
    assert done.returncode != 0, text
    assert "source tree is over the limit of 20.0 MiB" in text, text
    assert remote_refs(pusher, url)["refs/heads/main"] != pusher.head(repo)

    # One file over the (lowered) one-file limit is refused at receive.
    sparse_file(repo / "data4.bin", 6 * mib, b"file 4\n")
    pusher.git("add", "-A", cwd=repo)
    pusher.git("commit", "-q", "-m", "one too big", cwd=repo)
    text = output(pusher.git("push", url, "main", cwd=repo, check=False))
    assert "data4.bin is 6.0 MiB, over the limit of 5.0 MiB" in text, text
