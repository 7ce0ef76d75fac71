#!/usr/bin/env python3
"""Where the router's CPU per request goes (issue 16): can tuning HAProxy meet
the goal of at most 1.1x plain nginx's CPU per request?

The router as `shipway server` runs it (the managed HAProxy, its access lines
pulled by Shipway's reader), then the same router with one part of its
settings taken out at a time, then with all of them out, and last HAProxy as
a bare static proxy (the replica's backend named in the configuration: no
Host lookup, no headers, no log, no retries). That last one is HAProxy's
floor in this set-up: a router cannot cost less than it. Each variant is a
settings reload of the running router; each wrk run on it is followed by the
same run on plain nginx (bench/router_overhead.py's peer: one worker, static
upstream with pooled connections, the same forwarded headers), and a variant's
ratio is the median of those per-pair ratios (min and max beside it).

Variants that drop a part Shipway needs are measurements, not options: the
L7 retry (a request an app lost by closing a pooled connection is sent again:
zero failures for clients that never retry), the access line (issue 18),
16 KB buffers (request heads up to ~15 KB, where nginx takes 8 KB a line),
the forwarded headers, the per-client connection limit.

Usage: .venv/bin/python bench/router_floor.py [--mode keepalive|new_conn] [--rounds 4] [--seconds 3]
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.router_candidates import static_upstream  # noqa: E402
from bench.router_overhead import HOST, plain_nginx, spread, wrk  # noqa: E402
from core.settings import Settings  # noqa: E402
from logger.router_lines import RouterLogReceiver  # noqa: E402
from logger.store import LogStore  # noqa: E402
from router.haproxy import HAProxyRouter  # noqa: E402
from router.haproxy_tls import self_signed_pem  # noqa: E402
from router.interface import Route  # noqa: E402
from router.nginx import _children  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def _cut(text: str, pattern: str, repl: str = "") -> str:
    """`text` with every match of `pattern` replaced; a pattern that no
    longer matches the rendered settings is a bench to fix, not a variant
    that silently measures the shipped router again."""
    out, n = re.subn(pattern, repl, text, flags=re.MULTILINE)
    if not n:
        raise SystemExit(f"router_floor: {pattern!r} not in the rendered settings")
    return out


def no_retry(t: str) -> str:
    return _cut(t, r"retry-on conn-failure empty-response", "retry-on conn-failure")


def no_log(t: str) -> str:
    return _cut(t, r"^    log ring@.*\n")


def small_buffers(t: str) -> str:
    return _cut(t, r"tune\.bufsize 16384", "tune.bufsize 8192")


def no_headers(t: str) -> str:
    t = _cut(t, r"^    option forwardfor\n")
    return _cut(t, r"^    http-request set-header X-Forwarded-\S+ \S+\n"
                   r"|^    http-request set-header X-Request-Start .*\n")


def no_client_limit(t: str) -> str:
    return _cut(t, r"^    (stick-table|tcp-request connection) .*\n")


def no_tls_rules(t: str) -> str:
    """The plain frontend's HTTP-01 answers and HTTPS-only redirect."""
    return _cut(t, r"^    acl acme_path .*\n|^    http-request (set-var\(txn\.acme\)|return|redirect) .*\n")


def no_handover(t: str) -> str:
    """A settings reload that closes idle clients again: no `stopping` rules."""
    t = _cut(t, r"^    http-request set-var\(txn\.handover\) .*\n")
    t = _cut(t, r"^    use_backend shipway_handover_\S+ if .*\n")
    t = _cut(t, r"^    option idle-close-on-response\n")
    return _cut(t, r" !\{ var\(txn\.handover\) -m bool \}", "")


def everything_out(t: str) -> str:
    for cut in (no_handover, no_retry, no_log, small_buffers, no_headers, no_client_limit,
                no_tls_rules):
        t = cut(t)
    return _cut(t, r"^    http-request disable-l7-retry .*\n")


def static_proxy(backend: str) -> Callable[[str], str]:
    """Everything out, and the app's backend named outright: no Host lookup."""
    def variant(t: str) -> str:
        return _cut(everything_out(t), r"^    use_backend .*\n", f"    use_backend {backend}\n")
    return variant


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("keepalive", "new_conn"), default="keepalive")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shipway-floor-"))
    pem_path = tmp / "cert.pem"
    pem_path.write_text(self_signed_pem(HOST))
    up_proc, up, _ = static_upstream(tmp / "replica")
    ng_proc, ng_port, _ = plain_nginx(tmp / "nginx", up, pem_path)
    settings = Settings(data_dir=tmp / "router", router_port=free_port(), https_port=free_port(),
                        base_domain="localhost", router_workers=1)
    router = HAProxyRouter(settings)
    router.start()
    store = LogStore(tmp / "logs.sqlite3")
    receiver = RouterLogReceiver(router.layout.admin_socket, store, router.app_for_backend)
    results: list[tuple[str, list[float], list[float], list[float]]] = []
    try:
        router.set_route(Route("app", [HOST], [("127.0.0.1", up)]))
        receiver.start()
        backend = dict(router._map_entries())[HOST]
        main_conf = Path(router.layout.main_conf)
        shipped = main_conf.read_text()
        variants: list[tuple[str, Callable[[str], str]]] = [
            ("as shipped", lambda t: t),
            ("without the L7 retry", no_retry),
            ("without the access line", no_log),
            ("8 KB buffers", small_buffers),
            ("without forwarded headers", no_headers),
            ("without the per-client limit", no_client_limit),
            ("without HTTP-01/HTTPS-only rules", no_tls_rules),
            ("without the reload handover", no_handover),
            ("all of the above out", everything_out),
            ("bare static proxy (HAProxy's floor)", static_proxy(backend)),
        ]
        close = args.mode == "new_conn"
        for name, variant in variants:
            main_conf.write_text(variant(shipped))
            router.reload()
            time.sleep(1)
            router_us, nginx_us = [], []
            for _ in range(args.rounds):
                pids = {router.pid()} | _children(router.pid())
                r = wrk(f"http://127.0.0.1:{settings.router_port}/", args.seconds, close, pids)
                n = wrk(f"http://127.0.0.1:{ng_port}/", args.seconds, close,
                        {ng_proc.pid} | _children(ng_proc.pid))
                if r["non2xx"] or r["socket_errors"] or n["non2xx"] or n["socket_errors"]:
                    print(f"  {name}: errors in a round ({r['socket_errors']} / {n['socket_errors']}); left out")
                    continue
                router_us.append(r["cpu_us"])
                nginx_us.append(n["cpu_us"])
            ratios = [r / n for r, n in zip(router_us, nginx_us)]
            results.append((name, ratios, router_us, nginx_us))
            print(f"  {name:38} {spread(ratios)}", flush=True)
        main_conf.write_text(shipped)
    finally:
        receiver.stop()
        router.stop()
        store.close()
        for proc in (ng_proc, up_proc):
            proc.terminate()
            proc.wait(10)
    print(f"\n{args.mode}, wrk -t1 -c16, {args.rounds} pairs x {args.seconds} s per variant; "
          "router CPU per request / plain nginx's (min / median / max); goal <= 1.1")
    for name, ratios, router_us, nginx_us in results:
        if ratios:
            print(f"  {name:38} {spread(ratios)}   router {statistics.median(router_us):5.1f} us, "
                  f"nginx {statistics.median(nginx_us):5.1f} us")


if __name__ == "__main__":
    main()
