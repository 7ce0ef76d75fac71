#!/usr/bin/env python3
"""Router overhead benchmark: the same load against one replica directly (its
127.0.0.1 published port: the real peer) and through nginx, alternated in
one run, with keep-alive clients and with a new connection per request.

Prints throughput and latency for both paths and the ratios (goal: nginx
adds at most 10 % latency and takes at most 10 % of the throughput).
The app is examples/nodejs (keep-alive capable), deployed by a real push.
Run: .venv/bin/python bench/router_overhead.py [--connections N] [--seconds S] [--rounds R]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.helpers import bench_server, fetch, new_app  # noqa: E402
from tests.e2e.load import run_load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="per round and path")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--example", default="nodejs")
    args = parser.parse_args()
    with bench_server("router-overhead") as (server, tmp):
        user, app = new_app(server, tmp / "home", args.example, "ro")
        user.push()
        assert fetch(server, app).status_code == 200
        [replica] = [r for r in user.shipway_json("-a", app, "ps")["replicas"]
                     if r["state"] == "running" and r["process_type"] == "web"]
        paths = {"direct": replica["host_port"], "nginx": server.router_port}
        host = f"{app}.localhost"
        print(f"app {app} ({args.example}), replica port {paths['direct']}, nginx port "
              f"{paths['nginx']}; {args.connections} connections, {args.seconds:g} s x "
              f"{args.rounds} rounds per path", flush=True)
        worst = float("-inf")
        for keepalive in (True, False):
            mode = "keep-alive" if keepalive else "new connection per request"
            results: dict[str, list[dict]] = {"direct": [], "nginx": []}
            run_load("127.0.0.1", paths["direct"], host, connections=args.connections,
                     seconds=1.0, keepalive=keepalive)  # warm-up
            for round_no in range(args.rounds):
                # The two paths take turns going first, so a drift of the
                # machine's speed within a round weighs on both alike.
                order = list(paths.items())
                for name, port in (order if round_no % 2 == 0 else order[::-1]):
                    stats = run_load("127.0.0.1", port, host, connections=args.connections,
                                     seconds=args.seconds, keepalive=keepalive)
                    results[name].append(stats.summary())
            med = {name: {k: statistics.median(r[k] for r in rows)
                          for k in ("rps", "mean_ms", "p50_ms", "p99_ms", "failed")}
                   for name, rows in results.items()}
            print(f"\n{mode}:")
            print(f"  {'path':<8} {'req/s':>9} {'mean ms':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
            for name in ("direct", "nginx"):
                m = med[name]
                print(f"  {name:<8} {m['rps']:>9.0f} {m['mean_ms']:>9.3f} {m['p50_ms']:>8.3f} "
                      f"{m['p99_ms']:>8.3f} {m['failed']:>7.0f}")
            lat = med["nginx"]["mean_ms"] / med["direct"]["mean_ms"]
            thr = med["nginx"]["rps"] / med["direct"]["rps"]
            print(f"  latency ratio nginx/direct {lat:.3f} ({(lat - 1) * 100:+.1f} %), "
                  f"throughput ratio {thr:.3f} ({(thr - 1) * 100:+.1f} %)", flush=True)
            worst = max(worst, lat - 1, 1 - thr)
        print(f"\ngoal: <= 10 % added -> {'met' if worst <= 0.10 else 'NOT met'} "
              f"(worst {worst * 100:.1f} %)")
        return 0


if __name__ == "__main__":
    sys.exit(main())
