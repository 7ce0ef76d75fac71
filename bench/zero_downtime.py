#!/usr/bin/env python3
"""Zero-downtime benchmark with clients that never retry (issue 16).

Steady load through the router (Python's `http.client`: keep-alive
clients, each on one reused connection, and new-connection clients; loopback
only, bounded) while the app is redeployed by a git push, restarted, scaled
1→3→1, reconfigured, given a domain and losing it, put in maintenance
and back, and has its certificate renewed. A request that fails is counted
once and never retried; a failure on a reused connection before any answer
byte is also counted as a "closed" connection (what a retrying client would
have retried). During maintenance, 503 answers with Retry-After are
expected: counted apart.

HTTPS (with pebble installed; --no-https skips it): the HAProxy run gets its
certificates from a real pebble, the app a custom name with a certificate,
and as many HTTPS clients again (keep-alive and new-connection, verifying
the certificate for that name) through every step; the renewal step renews
that certificate now (bench/zd_tls.py) and checks that the router serves the
new one afterwards (serial and not_after printed).

The same scenario runs through the former nginx router (reloaded per
change; SHIPWAY_ROUTER_PROXY=nginx) in the same run, and the figures are
printed side by side (nginx has no maintenance mode: those steps are n/a).
Run: .venv/bin/python bench/zero_downtime.py [--clients N] [--no-peer] [--no-https]
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

from bench.zd_tls import (LoopbackHTTPS, client_context, describe, force_renewal,  # noqa: E402
                          served_certificate)
from tests.conftest import ShipwayServer, _stop_nginx, remove_docker_objects  # noqa: E402
from tests.e2e.helpers import fetch, new_app, wait_for  # noqa: E402
from tests.pebble import Pebble, pebble_installed, run_pebble  # noqa: E402

MAX_STEP_SECONDS = 300  # every client stops after this, whatever happens


class Clients:
    """N keep-alive and N new-connection clients, none ever retrying; as many
    again over HTTPS when `https` (port, name, root PEM) is given (counted
    under "https ...")."""

    def __init__(self, port: int, host: str, n: int, pause: float,
                 https: tuple[int, str, str] | None = None) -> None:
        self.port, self.host, self.n, self.pause = port, host, n, pause
        self.https = https
        self.tls = client_context(https[2]) if https else None
        self.lock = threading.Lock()
        self.c: Counter = Counter()
        self.errors: Counter = Counter()
        self._stop = threading.Event()
        kinds = [(keep, False) for keep in [True] * n + [False] * n]
        if https:
            kinds += [(keep, True) for keep in [True] * n + [False] * n]
        self._threads = [threading.Thread(target=self._run, args=kind, daemon=True)
                         for kind in kinds]

    def _count(self, key: str, error: str | None = None) -> None:
        with self.lock:
            self.c[key] += 1
            if error:
                self.errors[error] += 1

    def _connect(self, tls: bool) -> http.client.HTTPConnection:
        if tls and self.https:
            return LoopbackHTTPS(self.https[1], self.https[0], context=self.tls, timeout=30)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def _run(self, keepalive: bool, tls: bool) -> None:
        deadline = time.monotonic() + MAX_STEP_SECONDS
        conn: http.client.HTTPConnection | None = None
        used = False  # the connection has carried a request already
        p = "https " if tls else ""
        host = self.https[1] if tls and self.https else self.host
        while not self._stop.is_set() and time.monotonic() < deadline:
            if conn is None:
                conn, used = self._connect(tls), False
            self._count(p + "sent")
            try:
                conn.request("GET", "/", headers={"Host": host})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self._count(p + "ok")
                elif resp.status == 503 and resp.getheader("Retry-After"):
                    self._count(p + "maintenance")
                else:
                    self._count(p + "failed", f"{p}HTTP {resp.status}")
                if resp.will_close:
                    conn.close()
                    conn = None
                used = True
            except (OSError, http.client.HTTPException) as exc:
                self._count(p + "failed", p + type(exc).__name__)
                if used:  # a reused connection closed under the client
                    self._count(p + "closed")
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
def server_with(proxy: str, pebble: Pebble | None = None) -> Iterator[tuple[ShipwayServer, Path]]:
    """A server of its own (router: `proxy`), all it started removed after;
    with `pebble`, certificates from it (the router's plain HTTP port is the
    one pebble validates HTTP-01 on)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-zd-{proxy}-"))
    env = {"SHIPWAY_ROUTER_PROXY": proxy, "SHIPWAY_STOP_GRACE": "5"}
    if pebble:
        env.update({"SHIPWAY_ACME_DIRECTORY": pebble.directory,
                    "SHIPWAY_ACME_CA_BUNDLE": pebble.ca_bundle,
                    "SHIPWAY_ACME_EMAIL": "ops@example.com"})
    server = ShipwayServer(tmp / "data", env=env)
    if pebble:
        server.router_port = pebble.http_port
    try:
        server.start()
        yield server, tmp
    finally:
        server.stop()
        remove_docker_objects(server.instance)
        _stop_nginx(server.data_dir)  # nginx or haproxy: both stopped
        shutil.rmtree(tmp, ignore_errors=True)


def scenario(proxy: str, clients: int, pause: float,
             pebble: Pebble | None = None) -> dict[str, Counter]:
    results: dict[str, Counter] = {}
    with server_with(proxy, pebble) as (server, tmp):
        user, app = new_app(server, tmp / "home", "procfile", "zd")
        user.push()
        assert fetch(server, app).status_code == 200
        serve = user.src / "serve.py"
        https = None
        if pebble:  # a custom name with a certificate from pebble, for the HTTPS clients
            tls_name = f"tls.{app}.example.com"
            user.shipway("-a", app, "domains:add", tls_name)

            def issued() -> bool:
                found = {d["hostname"]: d for d in user.shipway_json("-a", app, "domains")}
                return found[tls_name]["certificate"]["status"] == "issued"

            wait_for(issued, timeout=120)
            wait_for(lambda: "Pebble" in served_certificate(server.https_port, tls_name)
                     .issuer.rfc4514_string(), timeout=60)
            https = (server.https_port, tls_name, pebble.root_pem())

        def renew() -> None:
            assert https and pebble
            before = served_certificate(https[0], https[1])
            renewed = force_renewal(server.data_dir, https[0], https[1], pebble.directory,
                                    pebble.ca_bundle)
            after = served_certificate(https[0], https[1])
            print(f"  [{proxy}] certificate of {https[1]}: {describe(before)} -> {describe(after)}",
                  flush=True)
            assert renewed == [https[1]], renewed
            assert after.serial_number != before.serial_number
            assert after.not_valid_after_utc >= before.not_valid_after_utc

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
            ("certificate renewal", renew if https else None),
        ]
        for name, action in steps:
            if action is None:
                continue
            with Clients(server.router_port, f"{app}.localhost", clients, pause, https) as load:
                time.sleep(1.0)
                started = time.monotonic()
                try:
                    action()
                except Exception as exc:  # noqa: BLE001 (reported, and the goal is not met)
                    print(f"  [{proxy}] {name}: step failed: {exc!r}", flush=True)
                    load.c["step failed"] += 1
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
    parser.add_argument("--no-https", action="store_true",
                        help="no pebble: no HTTPS clients, no certificate renewal step")
    args = parser.parse_args()
    if args.no_https or not pebble_installed():
        runs = {"haproxy": scenario("haproxy", args.clients, args.pause)}
    else:
        with tempfile.TemporaryDirectory(prefix="bench-zd-pebble-") as pdir, \
                run_pebble(Path(pdir)) as pebble:
            runs = {"haproxy": scenario("haproxy", args.clients, args.pause, pebble)}
    if not args.no_peer:
        runs["nginx"] = scenario("nginx", args.clients, args.pause)
    names = list(runs["haproxy"])
    columns = [(p, "") for p in runs]
    if any(c["https sent"] for c in runs["haproxy"].values()):
        columns.insert(1, ("haproxy", "https "))
    print()
    print(f"{'step':<20} " + " ".join(f"{p + ' ' + k + 'sent/failed/closed/503':>40}"
                                      for p, k in columns))
    totals = {(p, k): Counter() for p, k in columns}
    for name in names:
        cells = []
        for p, k in columns:
            c = runs[p].get(name)
            if c is None:
                cells.append(f"{'n/a':>40}")
                continue
            totals[p, k].update({x: c[k + x] for x in ("sent", "failed", "closed", "maintenance")})
            cells.append(f"{c[k + 'sent']:>12}/{c[k + 'failed']}/{c[k + 'closed']}/"
                         f"{c[k + 'maintenance']:<12}".rjust(40))
        print(f"{name:<20} " + " ".join(cells))
    for (p, k), t in totals.items():
        print(f"TOTAL {p + ' ' + k:<14} sent {t['sent']}, failed {t['failed']}, connections closed "
              f"under a client {t['closed']}, expected maintenance 503s {t['maintenance']}")
    h = totals["haproxy", ""]
    if ("nginx", "") in totals:
        n = totals["nginx", ""]
        rate = lambda t: t["failed"] / max(1, t["sent"])  # noqa: E731
        print(f"failed-request rate (plain HTTP) haproxy/nginx: {rate(h):.5f} / {rate(n):.5f}"
              + (f" = {rate(h) / rate(n):.2f}x" if rate(n) else ""))
    steps_failed = sum(c["step failed"] for c in runs["haproxy"].values())
    met = steps_failed == 0 and all(t["failed"] == 0 and t["closed"] == 0
                                    for (p, _), t in totals.items() if p == "haproxy")
    print(f"goal (haproxy, HTTP and HTTPS): 0 failed, 0 closed, every step done "
          f"({steps_failed} failed) -> {'met' if met else 'NOT met'}")
    return 0 if met else 1

if __name__ == "__main__":
    sys.exit(main())
