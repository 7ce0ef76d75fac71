#!/usr/bin/env python3
"""Zero-downtime benchmark with clients that never retry (issue 16).

Steady load through the router (Python's `http.client`: keep-alive
clients, each on one reused connection, and new-connection clients; loopback
only, bounded) while the app is redeployed by a git push, restarted, scaled
1→3→1, reconfigured, given a domain and losing it, and put in maintenance
and back. A request that fails is counted once and never retried; a failure
on a reused connection before any answer byte is also counted as a
"closed" connection (what a retrying client would have retried). During
maintenance, 503 answers with Retry-After are expected: counted apart.

The same scenario runs through the former nginx router (reloaded per
change; SHIPWAY_ROUTER_PROXY=nginx) in the same run, and the figures are
printed side by side (nginx has no maintenance mode: those steps are n/a).
Run: .venv/bin/python bench/zero_downtime.py [--clients N] [--no-peer]
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import ShipwayServer, _stop_nginx, remove_docker_objects  # noqa: E402
from tests.e2e.helpers import fetch, new_app  # noqa: E402

MAX_STEP_SECONDS = 300  # every client stops after this, whatever happens


class Clients:
    """N keep-alive and N new-connection clients, none ever retrying."""

    def __init__(self, port: int, host: str, n: int, pause: float) -> None:
        self.port, self.host, self.n, self.pause = port, host, n, pause
        self.lock = threading.Lock()
        self.c: Counter = Counter()
        self.errors: Counter = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(keep,), daemon=True)
                         for keep in [True] * n + [False] * n]

    def _count(self, key: str, error: str | None = None) -> None:
        with self.lock:
            self.c[key] += 1
            if error:
                self.errors[error] += 1

    def _run(self, keepalive: bool) -> None:
        deadline = time.monotonic() + MAX_STEP_SECONDS
        conn: http.client.HTTPConnection | None = None
        used = False  # the connection has carried a request already
        while not self._stop.is_set() and time.monotonic() < deadline:
            if conn is None:
                conn, used = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30), False
            self._count("sent")
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self._count("ok")
                elif resp.status == 503 and resp.getheader("Retry-After"):
                    self._count("maintenance")
                else:
                    self._count("failed", f"HTTP {resp.status}")
                if resp.will_close:
                    conn.close()
                    conn = None
                used = True
            except (OSError, http.client.HTTPException) as exc:
                self._count("failed", type(exc).__name__)
                if used:  # a reused connection closed under the client
                    self._count("closed")
                conn.close()
                conn = None
            if not keepalive and conn is not None:
                conn.close()
                conn = None
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def __enter__(self) -> "Clients":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(40)


@contextlib.contextmanager
def server_with(proxy: str) -> Iterator[tuple[ShipwayServer, Path]]:
    """A server of its own (router: `proxy`), all it started removed after."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-zd-{proxy}-"))
    server = ShipwayServer(tmp / "data", env={"SHIPWAY_ROUTER_PROXY": proxy,
                                              "SHIPWAY_STOP_GRACE": "5"})
    try:
        server.start()
        yield server, tmp
    finally:
        server.stop()
        remove_docker_objects(server.instance)
        _stop_nginx(server.data_dir)  # nginx or haproxy: both stopped
        shutil.rmtree(tmp, ignore_errors=True)


def scenario(proxy: str, clients: int, pause: float) -> dict[str, Counter]:
    results: dict[str, Counter] = {}
    with server_with(proxy) as (server, tmp):
        user, app = new_app(server, tmp / "home", "procfile", "zd")
        user.push()
        assert fetch(server, app).status_code == 200
        serve = user.src / "serve.py"

        def redeploy() -> None:
            serve.write_text(serve.read_text() + "\n# touched\n")
            user.commit("one-line change")
            user.push()

        def cli(*args: str) -> Callable[[], object]:
            return lambda: user.shipway("-a", app, *args)

        steps: list[tuple[str, Callable[[], object] | None]] = [
            ("redeploy (git push)", redeploy),
            ("ps:restart", cli("ps:restart")),
            ("scale 1 -> 3", cli("ps:scale", "--replicas", "3")),
            ("scale 3 -> 1", cli("ps:scale", "--replicas", "1")),
            ("config:set", cli("config:set", f"GREETING=t{time.time():.0f}")),
            ("domains:add", cli("domains:add", f"www.{app}.example.com")),
            ("domains:remove", cli("domains:remove", f"www.{app}.example.com")),
            ("maintenance:on", cli("maintenance:on") if proxy == "haproxy" else None),
            ("maintenance:off", cli("maintenance:off") if proxy == "haproxy" else None),
        ]
        for name, action in steps:
            if action is None:
                continue
            with Clients(server.router_port, f"{app}.localhost", clients, pause) as load:
                time.sleep(1.0)
                started = time.monotonic()
                action()
                took = time.monotonic() - started
                time.sleep(1.5)
            load.c["seconds_x100"] = int(took * 100)
            for e, n in load.errors.items():
                load.c[f"error {e}"] = n
            results[name] = load.c
            print(f"  [{proxy}] {name:<20} {dict(load.c)}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4,
                        help="keep-alive clients, and as many new-connection clients")
    parser.add_argument("--pause", type=float, default=0.01, help="seconds between a client's requests")
    parser.add_argument("--no-peer", action="store_true", help="skip the nginx run")
    args = parser.parse_args()
    runs = {"haproxy": scenario("haproxy", args.clients, args.pause)}
    if not args.no_peer:
        runs["nginx"] = scenario("nginx", args.clients, args.pause)
    names = list(runs["haproxy"])
    print()
    print(f"{'step':<20} " + " ".join(f"{p + ' sent/failed/closed/503':>34}" for p in runs))
    totals = {p: Counter() for p in runs}
    for name in names:
        cells = []
        for p, res in runs.items():
            c = res.get(name)
            if c is None:
                cells.append(f"{'n/a':>34}")
                continue
            totals[p].update({k: c[k] for k in ("sent", "failed", "closed", "maintenance")})
            cells.append(f"{c['sent']:>12}/{c['failed']}/{c['closed']}/{c['maintenance']:<12}"
                         .rjust(34))
        print(f"{name:<20} " + " ".join(cells))
    for p, t in totals.items():
        print(f"TOTAL {p:<8} sent {t['sent']}, failed {t['failed']}, connections closed under "
              f"a client {t['closed']}, expected maintenance 503s {t['maintenance']}")
    h = totals["haproxy"]
    if "nginx" in totals:
        n = totals["nginx"]
        rate = lambda t: t["failed"] / max(1, t["sent"])  # noqa: E731
        print(f"failed-request rate haproxy/nginx: {rate(h):.5f} / {rate(n):.5f}"
              + (f" = {rate(h) / rate(n):.2f}x" if rate(n) else ""))
    met = h["failed"] == 0 and h["closed"] == 0
    print(f"goal (haproxy): 0 failed, 0 closed -> {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
