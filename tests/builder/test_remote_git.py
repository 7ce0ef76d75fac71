"""Fetches for a push (builder/remote_git.py) with real git, through the real
fetch guard, against servers on 127.0.0.1: allowed only when fetch_allow
names them, refused before any connection otherwise, redirects included,
failures said in our words."""
from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from builder.remote_git import FetchPolicy, clone_ref, fetch_commit, fetch_home
from controller.errors import BuildFailed
from tests.builder.helpers import HitCounter, commit_dir, git, git_daemon, write_tree


@pytest.fixture
def counter() -> Iterator[HitCounter]:
    made = HitCounter(b"HTTP/1.0 404 Not Found\r\nContent-Length: 11\r\n\r\nBODY-SECRET")
    yield made
    made.close()


def _home(tmp_path: Path, allow: str = "", total: float = 60) -> Path:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return fetch_home(work, FetchPolicy.for_build(allow, 3, total))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A repo with a tag, served over git:// by a real git daemon."""
    base = tmp_path / "served"
    pack = base / "pack-work"
    write_tree(pack, {"bin/detect": "#!/bin/sh\necho x\n"})
    commit_dir(pack)
    git("tag", "v1", cwd=pack)
    git("clone", "-q", "--bare", str(pack), str(base / "pack.git"))
    for url in git_daemon(base):
        yield base, url


def test_allowed_git_daemon_is_fetched(tmp_path: Path, served: tuple[Path, str]) -> None:
    base, url = served
    port = url.rsplit(":", 1)[1]
    home = _home(tmp_path, f"127.0.0.1:{port}")
    assert clone_ref(f"{url}/pack.git", "v1", tmp_path / "out", home) is None
    assert (tmp_path / "out" / "bin" / "detect").is_file()
    sha = git("rev-parse", "HEAD", cwd=base / "pack-work")
    fetch_commit(f"{url}/pack.git", sha, tmp_path / "sub.git", home, name="s")
    # the sha form of a ref: a full clone, then the commit
    assert clone_ref(f"{url}/pack.git", sha[:10], tmp_path / "bysha", home) is None
    assert clone_ref(f"{url}/pack.git", "nosuch", tmp_path / "no", home) == "ref not found"


def test_allowed_by_host_alone_any_port(tmp_path: Path, served: tuple[Path, str]) -> None:
    _, url = served
    assert clone_ref(f"{url}/pack.git", "v1", tmp_path / "o", _home(tmp_path, "127.0.0.1")) is None


@pytest.mark.parametrize("scheme", ["http", "https", "git"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "2130706433"])
def test_loopback_is_refused_before_any_connection(tmp_path: Path, counter: HitCounter,
                                                   scheme: str, host: str) -> None:
    url = f"{scheme}://{host}:{counter.port}/x.git"
    why = clone_ref(url, "", tmp_path / "o", _home(tmp_path))
    assert why is not None and "resolves to a loopback address" in why
    assert "SHIPWAY_FETCH_ALLOW" in why
    with pytest.raises(BuildFailed) as e:
        fetch_commit(url, "a" * 40, tmp_path / "s.git", _home(tmp_path), name="m")
    assert "loopback" in str(e.value) and e.value.reason == "submodule m failed"
    assert counter.hits == 0


def test_refusal_does_not_depend_on_the_port(tmp_path: Path, counter: HitCounter) -> None:
    """A closed port, a silent one and an answering one look the same."""
    silent = HitCounter(None)
    try:
        answers = {clone_ref(f"http://127.0.0.1:{port}/x.git", "", tmp_path / f"o{port}",
                             _home(tmp_path))
                   for port in (1, counter.port, silent.port)}
        assert len(answers) == 1 and counter.hits == silent.hits == 0
    finally:
        silent.close()


def test_redirect_to_a_refused_address_is_refused(tmp_path: Path, counter: HitCounter) -> None:
    target = f"http://127.0.0.1:{counter.port}/x.git"

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target + self.path[len("/x.git"):])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        allowed = f"127.0.0.1:{server.server_address[1]}"
        why = clone_ref(f"http://{allowed}/x.git", "", tmp_path / "o", _home(tmp_path, allowed))
        assert why is not None and "loopback" in why
        assert counter.hits == 0
    finally:
        server.shutdown()
        server.server_close()


def test_failure_is_said_in_our_words(tmp_path: Path, counter: HitCounter) -> None:
    """The server's body and git's stderr never come back; credentials in the
    URL are not shown."""
    url = f"http://user:pa55word@127.0.0.1:{counter.port}/x.git"
    why = clone_ref(url, "", tmp_path / "o", _home(tmp_path, f"127.0.0.1:{counter.port}"))
    assert why == "repository not found" and counter.hits >= 1
    with pytest.raises(BuildFailed) as e:
        fetch_commit(url, "b" * 40, tmp_path / "s.git",
                     _home(tmp_path, f"127.0.0.1:{counter.port}"), name="m")
    text = str(e.value)
    assert "pa55word" not in text and "user" not in text and "BODY-SECRET" not in text
    assert f"http://127.0.0.1:{counter.port}/x.git" in text


def test_silent_git_port_fails_within_the_connect_timeout(tmp_path: Path) -> None:
    silent = HitCounter(None)
    try:
        start = time.monotonic()
        why = clone_ref(f"git://127.0.0.1:{silent.port}/x.git", "", tmp_path / "o",
                        _home(tmp_path, f"127.0.0.1:{silent.port}"))
        elapsed = time.monotonic() - start
        assert why is not None and silent.hits == 1
        assert elapsed < 3 + 5, elapsed  # connect timeout 3 s, plus git's start
    finally:
        silent.close()


def test_all_fetches_of_a_build_share_one_deadline(tmp_path: Path, served: tuple[Path, str]) -> None:
    _, url = served
    home = _home(tmp_path, "127.0.0.1", total=0.01)
    time.sleep(0.05)
    assert clone_ref(f"{url}/pack.git", "v1", tmp_path / "o", home) == "timed out"


def test_options_never_reach_git(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed) as e:
        fetch_commit("--upload-pack=touch", "c" * 40, tmp_path / "s.git",
                     _home(tmp_path), name="m")
    assert "only https" in str(e.value)
    with pytest.raises(BuildFailed):
        fetch_commit("http://h.example/x.git", "--output=/tmp/x", tmp_path / "s.git",
                     _home(tmp_path), name="m")
