"""Issue 14, finding 2: a push's fetches (buildpacks, submodules) never reach
loopback, private or the host's own addresses, by IP, by name or by
redirect, unless SHIPWAY_FETCH_ALLOW names them; a silent git:// port fails
fast; credentials in a URL are never shown; an allowed local git HTTP server
still serves buildpacks. Real `shipway server`, real `git push`, real Docker.
"""
from __future__ import annotations

import http.server
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.builder.helpers import HitCounter
from tests.conftest import ShipwayServer, _stop_nginx
from tests.e2e.helpers import User, new_app


# what the internal server answers, so a leak of its body would show
SECRET_REPLY = b"HTTP/1.0 200 OK\r\nContent-Length: 15\r\n\r\nINTERNAL-SECRET"


class GitHttp:
    """Smart HTTP git (real `git http-backend` as CGI) over `root`, on
    127.0.0.1; paths under /redirect/HOST:PORT/... answer a 302 there."""

    def __init__(self, root: Path) -> None:
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _cgi(self) -> None:
                outer.hits += 1
                path, _, query = self.path.partition("?")
                if path.startswith("/redirect/"):
                    target = path[len("/redirect/"):]
                    self.send_response(302)
                    self.send_header("Location", f"http://{target}?{query}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(root),
                       "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
                       "REQUEST_METHOD": self.command,
                       "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                       "CONTENT_LENGTH": str(len(body)),
                       "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                       "GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
                out = subprocess.run(["git", "http-backend"], input=body, env=env,
                                     capture_output=True, timeout=60).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _cgi

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_buildpack(root: Path) -> None:
    """root/pack.git: a buildpack tagged v1 that leaves a marker file."""
    work = root / "pack-work"
    (work / "bin").mkdir(parents=True)
    (work / "bin" / "detect").write_text("#!/bin/sh\necho Guarded\n")
    (work / "bin" / "compile").write_text("#!/bin/sh\necho fetched-pack > \"$1/from-pack\"\n")
    (work / "bin" / "release").write_text("#!/bin/sh\necho '--- {}'\n")
    for name in ("detect", "compile", "release"):
        (work / "bin" / name).chmod(0o755)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "pack"],
                 ["tag", "v1"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(root / "pack.git")],
                   check=True)


class World:
    """One shipway server and the local servers the attacks aim at."""

    def __init__(self, server: ShipwayServer, recorder: Recorder, silent: Recorder,
                 githttp: GitHttp) -> None:
        self.server, self.recorder, self.silent, self.githttp = server, recorder, silent, githttp
        self.count = 0

    def pusher(self, tmp_path: Path, prefix: str) -> tuple[User, str]:
        self.count += 1
        return new_app(self.server, tmp_path / f"home{self.count}", "procfile",
                       f"{prefix}{self.count}")

    def everything_said(self, user: User, app: str, push: Any) -> str:
        """The push output, the app's build records and its logs."""
        api = self.server.api(_api_key(user))
        builds = api.get(f"/api/apps/{app}/builds").text
        logs = api.get(f"/api/apps/{app}/logs", params={"lines": 1500}).text
        return "\n".join([push.stdout, push.stderr, builds, logs])


def _api_key(user: User) -> str:
    for line in (user.home / ".netrc").read_text().split():
        last = line
    return last


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, stack_image: str) -> Iterator[World]:
    root = tmp_path_factory.mktemp("served")
    make_buildpack(root)
    recorder, silent, githttp = HitCounter(SECRET_REPLY), HitCounter(None), GitHttp(root)
    allow = f"127.0.0.1:{githttp.port},127.0.0.1:{silent.port}"
    server = ShipwayServer(tmp_path_factory.mktemp("shipway-fetch"),
                           env={"SHIPWAY_FETCH_ALLOW": allow,
                                "SHIPWAY_FETCH_CONNECT_TIMEOUT": "5"}).start()
    try:
        yield World(server, recorder, silent, githttp)
    finally:
        server.stop()
        server.cleanup_docker()
        _stop_nginx(server.data_dir)
        for each in (recorder, silent, githttp):
            each.close()


def push_with(user: User, files: dict[str, str]) -> subprocess.CompletedProcess:
    for name, text in files.items():
        (user.src / name).write_text(text)
    user.commit("attack")
    return user.push(check=False)


def add_submodule(user: User, url: str) -> None:
    """A gitlink at ext/thing and its .gitmodules entry, as `git submodule add`
    would write them (without fetching anything)."""
    user.git("update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},ext/thing")
    (user.src / ".gitmodules").write_text(
        f'[submodule "thing"]\n\tpath = ext/thing\n\turl = {url}\n')
    user.git("add", ".gitmodules")
    user.git("commit", "-q", "-m", "submodule")


def test_buildpack_url_on_loopback_is_refused_unreached(world: World, tmp_path: Path) -> None:
    for host in ("127.0.0.1", "localhost"):
        user, app = world.pusher(tmp_path, "bpl")
        url = f"http://{host}:{world.recorder.port}/x.git"
        done = push_with(user, {".buildpacks": f"{url}\n"})
        text = world.everything_said(user, app, done)
        assert done.returncode != 0
        assert "resolves to a loopback address" in text and "SHIPWAY_FETCH_ALLOW" in text, text
        assert "INTERNAL-SECRET" not in text
    assert world.recorder.hits == 0


def test_submodule_on_loopback_is_refused_unreached(world: World, tmp_path: Path) -> None:
    user, app = world.pusher(tmp_path, "sml")
    add_submodule(user, f"http://127.0.0.1:{world.recorder.port}/sub.git")
    done = user.push(check=False)
    text = world.everything_said(user, app, done)
    assert done.returncode != 0
    assert "submodule thing" in text and "loopback" in text, text
    assert world.recorder.hits == 0


def test_redirect_from_an_allowed_server_to_loopback_is_refused(world: World,
                                                                 tmp_path: Path) -> None:
    user, app = world.pusher(tmp_path, "redir")
    before = world.githttp.hits
    url = (f"http://127.0.0.1:{world.githttp.port}/redirect/"
           f"127.0.0.1:{world.recorder.port}/x.git")
    done = push_with(user, {".buildpacks": f"{url}\n"})
    text = world.everything_said(user, app, done)
    assert done.returncode != 0 and "loopback" in text, text
    assert world.githttp.hits > before  # the allowed server was asked
    assert world.recorder.hits == 0     # where it pointed was not


def test_credentials_in_urls_are_never_shown(world: World, tmp_path: Path) -> None:
    user, app = world.pusher(tmp_path, "creds")
    url = f"http://someone:T0kenS3cret@127.0.0.1:{world.githttp.port}/missing.git?key=Q5ecret"
    done = push_with(user, {".buildpacks": f"{url}\n"})
    text = world.everything_said(user, app, done)
    assert done.returncode != 0 and "could not be fetched: repository not found" in text, text
    assert "T0kenS3cret" not in text and "Q5ecret" not in text and "someone" not in text

    user, app = world.pusher(tmp_path, "subcreds")
    add_submodule(user, f"http://someone:T0kenS3cret@127.0.0.1:{world.recorder.port}/s.git")
    done = user.push(check=False)
    text = world.everything_said(user, app, done)
    assert "Fetching submodule thing from http://127.0.0.1:" in text, text
    assert "T0kenS3cret" not in text and "someone" not in text


def test_silent_git_port_fails_fast(world: World, tmp_path: Path) -> None:
    user, app = world.pusher(tmp_path, "silent")
    start = time.monotonic()
    done = push_with(user, {".buildpacks": f"git://127.0.0.1:{world.silent.port}/x.git\n"})
    elapsed = time.monotonic() - start
    text = world.everything_said(user, app, done)
    assert done.returncode != 0 and "could not be fetched" in text, text
    assert world.silent.hits >= 1
    assert elapsed < 30, elapsed  # connect/idle timeout 5 s; was git's 300 s


def test_allowed_local_git_http_buildpack_still_works(world: World, tmp_path: Path) -> None:
    user, app = world.pusher(tmp_path, "okpack")
    url = f"http://127.0.0.1:{world.githttp.port}/pack.git#v1"
    done = push_with(user, {".buildpacks": f"{url}\nprocfile\n"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Guarded app detected" in done.stderr, done.stderr
