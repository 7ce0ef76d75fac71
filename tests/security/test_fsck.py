"""Issue 14, finding 8: received objects are checked as C git's
`receive.fsckObjects` does, so a pushed tree with a `..` or `.git` entry is
refused with git's fsck message id and no branch moves; a quarantine a crash
left behind (`objects/incoming-*`) is gone after a restart and never counts
toward the repository size."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.gitd.gitkit import Pusher, output, remote_refs


def literal_tree(pusher: Pusher, repo: Path, name: bytes) -> str:
    """A tree with one entry called `name` (git mktree would refuse it)."""
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=b"x\n",
                          capture_output=True, check=True, env=pusher.env())
    sha = bytes.fromhex(blob.stdout.decode().strip())
    raw = b"100644 " + name + b"\0" + sha
    proc = subprocess.run(["git", "hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
                          cwd=repo, input=raw, capture_output=True, check=True,
                          env=pusher.env())
    return proc.stdout.decode().strip()


def commit_of(pusher: Pusher, repo: Path, tree: str) -> str:
    parent = pusher.head(repo)
    return pusher.git("commit-tree", tree, "-p", parent, "-m", "evil",
                      cwd=repo).stdout.decode().strip()


@pytest.fixture
def pusher(shipway_server, tmp_path: Path) -> Pusher:
    return Pusher(shipway_server, shipway_server.signup(), tmp_path / "home",
                  register_key=False)


@pytest.mark.parametrize("name,msg_id", [(b"..", "hasDotdot"), (b".git", "hasDotgit"),
                                         (b".GIT", "hasDotgit")])
def test_tree_with_dangerous_entry_is_refused(pusher: Pusher, name: bytes, msg_id: str) -> None:
    app = pusher.create_app()
    repo = pusher.new_repo()
    url = pusher.http_url(app)
    # A branch that does not deploy: only receive's checks stand in the way.
    pusher.git("push", "-q", url, "main:refs/heads/stored", cwd=repo)
    evil = commit_of(pusher, repo, literal_tree(pusher, repo, name))
    done = pusher.git("push", url, f"{evil}:refs/heads/stored", cwd=repo, check=False)
    text = output(done)
    assert done.returncode != 0, text
    assert "fsck" in text and msg_id in text, text
    assert str(pusher.server.data_dir) not in text
    assert remote_refs(pusher, url)["refs/heads/stored"] == pusher.head(repo)


def test_stale_quarantine_is_swept_at_start_and_not_counted(make_server,
                                                            tmp_path: Path) -> None:
    server = make_server()
    pusher = Pusher(server, server.signup(), tmp_path / "home", register_key=False)
    app = pusher.create_app()
    repo = pusher.new_repo()
    pusher.git("push", "-q", pusher.http_url(app), "main:refs/heads/stored", cwd=repo)
    objects = server.data_dir / "repos" / f"{app}.git" / "objects"
    server.kill9()
    # What a crash mid-push leaves: a quarantine with a partial pack.
    stale = objects / "incoming-0123456789ab" / "pack"
    stale.mkdir(parents=True)
    with open(stale / "tmp_pack_x", "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024))

    from gitd.repos import RepoStore
    store = RepoStore(server.data_dir)
    # Not counted toward the repository's size, even before it is removed.
    assert store.size(app) < 1024 * 1024

    server.start()
    assert not stale.parent.exists()
    assert pusher.git("ls-remote", pusher.http_url(app)).returncode == 0


def test_live_quarantine_is_not_swept(tmp_path: Path) -> None:
    """A push under way (its quarantine locked) survives a sweep."""
    from gitd.ingest import Quarantine, sweep_stale
    from gitd.repos import RepoStore

    store = RepoStore(tmp_path)
    path = store.ensure("live")
    live = Quarantine(path)
    stale = path / "objects" / "incoming-stale0000000"
    (stale / "pack").mkdir(parents=True)
    assert sweep_stale(path / "objects") == 1
    assert live.path.is_dir() and not stale.exists()
    live.discard()
    assert not live.path.exists()
