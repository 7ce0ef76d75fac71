#!/usr/bin/env python3
"""Idle kept-alive clients across a settings reload of the HAProxy router
(issue 16 item 1: "a full reload ... even then drops nothing").

The router as shipped (a stopping worker hands each idle client's next
request to the new worker, router/haproxy_handover) against
the same router without the handover (HAProxy 2.6's own soft stop, which
closes idle client connections at once), in the same run: each round makes
`--clients` connections that send one request and sit idle, reloads, then
sends one more request on each, never retried. A request that fails on a
connection the proxy closed counts as failed.

Usage: .venv/bin/python bench/reload_idle.py [--clients 20] [--reloads 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.router_candidates import HOST, idle_connections_across_changes, static_upstream  # noqa: E402
from core.settings import Settings  # noqa: E402
from router.haproxy import HAProxyRouter  # noqa: E402
from router.interface import Route  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def failed_across_reloads(tmp: Path, upstream: int, handover: bool, clients: int,
                          reloads: int) -> tuple[int, int]:
    settings = Settings(data_dir=tmp, router_port=free_port(), https_port=0,
                        base_domain="localhost", router_workers=1)
    router = HAProxyRouter(settings)
    if not handover:
        router.layout = router.process.layout = attrs.evolve(router.layout, handover_dir="")
    try:
        router.start()
        router.set_route(Route("app", [HOST], [("127.0.0.1", upstream)]))
        return idle_connections_across_changes(settings.router_port, router.reload, reloads, clients)
    finally:
        router.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--reloads", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shipway-reload-idle-"))
    up_proc, up, _ = static_upstream(tmp / "replica")
    try:
        rows = [(name, failed_across_reloads(tmp / f"router{i}", up, handover,
                                             args.clients, args.reloads))
                for i, (name, handover) in enumerate((("with the handover (shipped)", True),
                                                      ("HAProxy's own soft stop", False)))]
    finally:
        up_proc.terminate()
        up_proc.wait(10)
    print(f"{args.clients} idle kept-alive clients x {args.reloads} settings reloads, "
          "next request never retried:")
    for name, (failed, total) in rows:
        print(f"  {name:30} {failed} / {total} failed")


if __name__ == "__main__":
    main()
