#!/usr/bin/env python3
"""Route-change time against the number of apps routed (issue 16).

For 100, 1,000 and 10,000 apps routed by the HAProxy router (the files
written in bulk, then loaded by `start`), times each kind of route change a
deploy makes (replica replaced, scaled to 3, hostname added, new app, app
removed, maintenance on), REPEAT times each, and reports the median and the
worst, the proxy's memory (master and workers) and its start time. Goal:
≤ 50 ms at 10,000 apps, flat in the number of apps.

Peer, in the same run: the former nginx router (one reload per change) at
1,000 apps (and 10,000 with --nginx-10k: a reload there takes tens of
seconds and ~2 GB). Run: .venv/bin/python bench/route_scale.py
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import router.nginx  # noqa: E402
from bench.router_candidates import rss_kb, static_upstream, timed  # noqa: E402
from core.settings import Settings  # noqa: E402
from router.haproxy import HAProxyRouter  # noqa: E402
from router.haproxy_conf import CHUNK, render_chunk, render_map, slot_backend  # noqa: E402
from router.interface import Route  # noqa: E402
from router.nginx import NginxRouter, _children  # noqa: E402
from tests.conftest import free_port  # noqa: E402

REPEAT = 5


def _changes(r, up: int, k: int) -> dict:
    """The kinds of change, each a callable (k: a fresh app index per round)."""
    a = f"a{7 + k}"
    return {
        "replica replaced": lambda: r.set_route(Route(a, [f"{a}.localhost"], [("127.0.0.2", up)])),
        "scaled to 3": lambda: r.set_route(Route(a, [f"{a}.localhost"], [
            ("127.0.0.2", up), ("127.0.0.3", up), ("127.0.0.4", up)])),
        "hostname added": lambda: r.set_route(Route(a, [f"{a}.localhost", f"www.{a}.example.com"],
                                                    [("127.0.0.2", up)])),
        "new app": lambda: r.set_route(Route(f"new{k}", [f"new{k}.localhost"], [("127.0.0.1", up)])),
        "app removed": lambda: r.remove_route(f"a{100 + k}"),
        "maintenance on": lambda: r.set_maintenance(a, True),
    }


def haproxy_at(tmp: Path, up: int, n: int) -> dict:
    s = Settings(data_dir=tmp, router_port=free_port(), base_domain="localhost", router_workers=1)
    r = HAProxyRouter(s, slots=n + CHUNK)
    Path(r.layout.conf_dir).mkdir(parents=True)
    for chunk in range((n + CHUNK) // CHUNK):
        Path(r.layout.chunk_path(chunk)).write_text(render_chunk(chunk, {
            i: (f"a{i}", {"s1": ("127.0.0.1", up)})
            for i in range(chunk * CHUNK, min(n, chunk * CHUNK + CHUNK))}))
    Path(r.layout.map_path).write_text(render_map((f"a{i}.localhost", slot_backend(i))
                                                  for i in range(n)))
    start_ms = timed(r.start)
    times: dict[str, list[float]] = {}
    try:
        for k in range(REPEAT):
            for kind, change in _changes(r, up, k).items():
                times.setdefault(kind, []).append(timed(change))
        pid = r.pid()
        rss = rss_kb({pid} | _children(pid))
    finally:
        r.stop()
    return {"start_ms": round(start_ms), "rss_mb": round(rss / 1024),
            "median_ms": {k: round(statistics.median(v), 2) for k, v in times.items()},
            "worst_ms": {k: round(max(v), 2) for k, v in times.items()}}


def nginx_at(tmp: Path, up: int, n: int) -> dict:
    router.nginx.APPLY_TIMEOUT = 300.0  # a 10k reload may pass the router's 15 s here
    s = Settings(data_dir=tmp, router_port=free_port(), base_domain="localhost", router_workers=1)
    r = NginxRouter(s)
    r.start()
    try:
        r._apply({f"a{i}": Route(f"a{i}", [f"a{i}.localhost"], [("127.0.0.1", up)])
                  for i in range(n)})  # bulk load, then time ordinary changes
        ms = [timed(lambda: r.set_route(Route("a1", ["a1.localhost"], [(f"127.0.0.{2 + k}", up)])))
              for k in range(3)]
        r.wait_drained(60)
        pid = r.pid()
        rss = rss_kb({pid} | _children(pid))
    finally:
        r.stop()
    return {"median_ms": round(statistics.median(ms), 1), "rss_mb": round(rss / 1024)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nginx-10k", action="store_true", help="also time nginx at 10,000 apps")
    args = ap.parse_args()
    results, peer = {}, {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, up, _ = static_upstream(tmp / "up")
        try:
            for n in (100, 1000, 10000):
                results[n] = haproxy_at(tmp / f"h{n}", up, n)
                print(f"haproxy, {n} apps: {results[n]}", flush=True)
            for n in ((1000, 10000) if args.nginx_10k else (1000,)):
                peer[n] = nginx_at(tmp / f"n{n}", up, n)
                print(f"nginx, {n} apps: {peer[n]}", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    worst10k = max(results[10000]["worst_ms"].values())
    med = {n: statistics.median(r["median_ms"].values()) for n, r in results.items()}
    print(f"median change (all kinds): 100 apps {med[100]:.2f} ms, 1,000 {med[1000]:.2f} ms, "
          f"10,000 {med[10000]:.2f} ms (10,000/100: {med[10000] / med[100]:.2f}x)")
    print(f"worst change at 10,000 apps: {worst10k:.1f} ms; memory {results[10000]['rss_mb']} MB")
    for n, p in peer.items():
        print(f"nginx at {n} apps: {p['median_ms']} ms per change, {p['rss_mb']} MB "
              f"(haproxy/nginx change time: {med[n] / p['median_ms']:.4f}x)")
    met = worst10k <= 50
    print(f"goal: <= 50 ms at 10,000 apps -> {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
