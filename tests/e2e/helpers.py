"""What the end-to-end tests do as a user would: the `shipway` CLI with its
own HOME (so its ~/.netrc is what `git push` authenticates with), real `git`
in a working copy of an example app, and curl-like requests through nginx."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import requests

from tests.conftest import ROOT, ShipwayServer, _stop_nginx, remove_docker_objects


class User:
    """One person at a terminal: a HOME, the CLI, and a git working copy."""

    def __init__(self, server: ShipwayServer, home: Path) -> None:
        self.server = server
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ, "HOME": str(home), "SHIPWAY_URL": server.url,
            "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "E2E", "GIT_AUTHOR_EMAIL": "e2e@example.com",
            "GIT_COMMITTER_NAME": "E2E", "GIT_COMMITTER_EMAIL": "e2e@example.com",
        }
        self.src = home / "src"

    def shipway(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=str(ROOT),
                                env=self.env, capture_output=True, text=True, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"shipway {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def shipway_json(self, *args: str) -> Any:
        return json.loads(self.shipway("--json", *args).stdout)

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["git", *args], cwd=str(self.src), env=self.env,
                                capture_output=True, text=True, timeout=900)
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def checkout_example(self, name: str, app: str) -> None:
        shutil.copytree(ROOT / "examples" / name, self.src)
        self.git("init", "-q", "-b", "main")
        self.commit("Initial commit")
        self.git("remote", "add", "shipway", f"{self.server.url}/{app}.git")

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").stdout.strip()

    def push(self, check: bool = True) -> subprocess.CompletedProcess:
        return self.git("push", "shipway", "main", check=check)

    def remote_head(self) -> str:
        out = self.git("ls-remote", "shipway", "refs/heads/main").stdout.split()
        return out[0] if out else ""


def erlang_node_port(container: Any, cookie: str, timeout: float = 30) -> int:
    """A node container's distribution port, published on 127.0.0.1 (as the
    runner reaches replicas), once the node answers a handshake there."""
    from runner.container_spec import DIST_PORT
    from runner.erl_dist import ErlDistError, NodeConnection

    container.reload()
    port = int(container.attrs["NetworkSettings"]["Ports"][f"{DIST_PORT}/tcp"][0]["HostPort"])
    deadline = time.monotonic() + timeout
    while True:
        try:
            NodeConnection("127.0.0.1", port, cookie).close()
            return port
        except (OSError, ErlDistError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def fetch(server: ShipwayServer, app: str, path: str = "/", timeout: float = 10) -> requests.Response:
    """A request through the router, as a browser at APP.localhost would."""
    return requests.get(f"http://127.0.0.1:{server.router_port}{path}",
                        headers={"Host": f"{app}.localhost"}, timeout=timeout)


def wait_for(predicate: Any, timeout: float = 60, interval: float = 0.5) -> Any:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 (keep waiting, report the last)
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting ({last!r})")


def stopped_then_started(server: ShipwayServer, stop: Any, while_down: Any) -> None:
    """Stop the server with `stop` (its `stop` or `kill9`), wait until
    `while_down()` holds, start it again and wait until it has adopted what
    runs ("shipway: ready")."""
    stop()
    wait_for(while_down, timeout=30)
    offset = server.log_path.stat().st_size
    server.start()
    wait_for(lambda: "shipway: ready" in server.log_path.read_text(errors="replace")[offset:],
             timeout=60)


class Prober:
    """Requests the app through nginx in a loop (fresh connections, bounded
    rate) and counts answers that are not 200."""

    def __init__(self, server: ShipwayServer, app: str, interval: float = 0.05) -> None:
        self.server, self.app, self.interval = server, app, interval
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.time() + 600  # bounded even if a test forgets to stop it
        while not self._stop.is_set() and time.time() < deadline:
            self.sent += 1
            try:
                r = fetch(self.server, self.app, timeout=5)
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:80]}")
            except requests.RequestException as exc:
                self.failures.append(repr(exc)[:120])
            time.sleep(self.interval)

    def __enter__(self) -> "Prober":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def new_app(server: ShipwayServer, home: Path, example: str, prefix: str,
            env: dict[str, str] | None = None) -> tuple[User, str]:
    """A signed-up user with a new app and a git working copy of `example`
    (config `env` set before the first push)."""
    user = User(server, home)
    user.shipway("signup", "--email", f"{home.name}-{prefix}@example.com",
                 "--password", "correct horse battery")
    app = f"{prefix}-{server.instance[-8:]}"
    user.shipway("create", app)
    if env:
        user.shipway("-a", app, "config:set", *(f"{k}={v}" for k, v in env.items()))
    user.checkout_example(example, app)
    return user, app


@contextlib.contextmanager
def bench_server(prefix: str) -> Iterator[tuple[ShipwayServer, Path]]:
    """A `shipway server` of its own for a benchmark, and a scratch dir; both
    removed afterwards with the containers and nginx it started."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    server = ShipwayServer(tmp / "data")
    try:
        server.start()
        yield server, tmp
    finally:
        server.stop()
        remove_docker_objects(server.instance)
        _stop_nginx(server.data_dir)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def acme_shipway(data: Path, pebble: Any, **env: str) -> Iterator[ShipwayServer]:
    """A server whose certificates come from the test's pebble (base domain
    shipway.test), with `env` on top; its router's HTTP port is the one
    pebble validates HTTP-01 on. Stopped, with its proxy, at the end."""
    server = ShipwayServer(data, env={
        "SHIPWAY_ACME_DIRECTORY": pebble.directory,
        "SHIPWAY_ACME_CA_BUNDLE": pebble.ca_bundle,
        "SHIPWAY_ACME_EMAIL": "ops@example.com",
        "SHIPWAY_BASE_DOMAIN": "shipway.test",
        **env,
    })
    server.router_port = pebble.http_port
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.cleanup_docker()
        _stop_nginx(server.data_dir)
