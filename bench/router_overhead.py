#!/usr/bin/env python3
"""Router overhead benchmark: the same load against one replica directly (its
127.0.0.1 published port: the real peer) and through nginx, alternated in
one run, with keep-alive clients and with a new connection per request.

Prints throughput and latency for both paths and the ratios (goal: nginx
adds at most 10 % latency and takes at most 10 % of the throughput), and
the CPU time each process on the path spent per request (from /proc and the
container's cgroup): on a machine whose cores the load generator, nginx,
docker-proxy and the app share, a path's throughput is bounded by the sum.
The app is examples/nodejs (keep-alive capable), deployed by a real push.
Run: .venv/bin/python bench/router_overhead.py [--connections N] [--seconds S] [--rounds R]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.helpers import bench_server, fetch, new_app  # noqa: E402
from tests.e2e.load import run_load  # noqa: E402


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _pids(match: Callable[[int, list[bytes]], bool]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if match(ppid, argv):
                found.append(int(entry.name))
    return found


def _container_seconds(container_id: str) -> float | None:
    """The container's CPU seconds from its cgroup (v1 or v2, by its id or
    the start of it), None if unreadable."""
    cgroups = Path("/sys/fs/cgroup")
    try:
        for v1 in cgroups.glob(f"cpuacct/docker/{container_id}*/cpuacct.usage"):
            return int(v1.read_text()) / 1e9
        for v2 in cgroups.glob(f"system.slice/docker-{container_id}*.scope/cpu.stat"):
            for line in v2.read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
    except (OSError, ValueError):
        pass
    return None


class CpuMeter:
    """CPU seconds spent by each process on the paths, read around a run."""

    def __init__(self, nginx_pid_file: Path, replica_port: int, container_id: str) -> None:
        master = int(nginx_pid_file.read_text().strip())
        port = str(replica_port).encode()
        self.groups: dict[str, Callable[[], float | None]] = {
            "load generator": lambda: sum(
                getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ("ru_utime", "ru_stime")),
            "docker-proxy": lambda: sum(map(_proc_seconds, _pids(
                lambda _pp, argv: b"docker-proxy" in argv[0] and port in argv))),
            "nginx": lambda: sum(map(_proc_seconds, [master] + _pids(
                lambda pp, _argv: pp == master))),
            "app container": lambda: _container_seconds(container_id),
        }

    def read(self) -> dict[str, float | None]:
        return {name: read() for name, read in self.groups.items()}


def _cpu_per_request(runs: list[dict]) -> dict[str, float | None]:
    """Each process group's CPU microseconds per answered request over
    `runs` ({"before", "after", "ok"} each); None where it was unreadable."""
    requests = sum(run["ok"] for run in runs)
    found: dict[str, float | None] = {}
    for name in runs[0]["before"]:
        spent = [run["after"][name] - run["before"][name] for run in runs
                 if run["before"][name] is not None and run["after"][name] is not None]
        known = len(spent) == len(runs) and requests
        found[name] = sum(spent) / requests * 1e6 if known else None
    return found


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
        meter = CpuMeter(server.data_dir / "router" / "nginx.pid", replica["host_port"],
                         replica["container_id"])
        host = f"{app}.localhost"
        print(f"app {app} ({args.example}), replica port {paths['direct']}, nginx port "
              f"{paths['nginx']}; {args.connections} connections, {args.seconds:g} s x "
              f"{args.rounds} rounds per path", flush=True)
        worst = float("-inf")
        for keepalive in (True, False):
            mode = "keep-alive" if keepalive else "new connection per request"
            results: dict[str, list[dict]] = {"direct": [], "nginx": []}
            cpu: dict[str, list[dict]] = {"direct": [], "nginx": []}  # before, after
            run_load("127.0.0.1", paths["direct"], host, connections=args.connections,
                     seconds=1.0, keepalive=keepalive)  # warm-up
            for round_no in range(args.rounds):
                # The two paths take turns going first, so a drift of the
                # machine's speed within a round weighs on both alike.
                order = list(paths.items())
                for name, port in (order if round_no % 2 == 0 else order[::-1]):
                    before = meter.read()
                    stats = run_load("127.0.0.1", port, host, connections=args.connections,
                                     seconds=args.seconds, keepalive=keepalive)
                    cpu[name].append({"before": before, "after": meter.read(), "ok": stats.ok})
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
            print("  CPU microseconds per request, all rounds:")
            per_request = {name: _cpu_per_request(cpu[name]) for name in ("direct", "nginx")}
            for name, spent in per_request.items():
                print(f"    {name:<8} " + ", ".join(
                    f"{group} {'?' if us is None else f'{us:.0f}'}" for group, us in spent.items()))
            direct_total = sum(us for us in per_request["direct"].values() if us is not None)
            nginx_us = per_request["nginx"]["nginx"]
            if nginx_us is not None and direct_total:
                print(f"  nginx's own CPU per request is {nginx_us / direct_total * 100:.1f} % of "
                      "all the CPU the direct path spends per request")
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
