#!/usr/bin/env python3
"""Hot upgrade benchmark (issue 17): an OTP release upgrade of three
replicas against a restart deploy of the same change, in the same run.

Two apps of examples/elixir-counter, --replicas each (3), v1 pushed; then
the same change (version 0.2.0, the GenServer's state becomes a map) pushed
to one with the hot-upgrade header and to the other plainly. For each push:
- the deploy step: from "Released vN" to the push's last deploy line, as
  the push output streams (for the hot push also the runner's own figure,
  "hot deploy step");
- the node pause: the longest request that overlapped the deploy step,
  from clients on kept-alive connections through the router (never
  retried); also the longest over the whole push (the build shares the
  host's CPUs with the app);
- failed requests;
- the longest request in 2 s of the same load before the push (steady
  state: what the host's CPU noise alone costs);
- whether one long-lived TCP connection straight to a replica (its
  published port on 127.0.0.1), used every 100 ms, survived.
The hot step is the whole path from "Released vN" (the release made) to
all replicas running it; the runner's timing line splits it (reaching
the conductor node, the artefact's transfer, reaching the other nodes,
stage, switch). --stagger stages the replicas one after the other instead
of all at once; --via exec takes the docker exec + erl_call way.
Run: .venv/bin/python bench/hot_upgrade.py [--replicas N] [--stagger] [--via exec]
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.helpers import bench_server, new_app  # noqa: E402
from runner.hot_upgrade import STAGGER_ENV, VIA_ENV  # noqa: E402
from tests.e2e.test_hot_upgrade_otp import counter_v2  # noqa: E402

MAX_SECONDS = 300  # every client stops after this, whatever happens


class Load:
    """`n` keep-alive clients through the router; every request's start,
    end and outcome, and the failures while running."""

    def __init__(self, port: int, host: str, n: int = 4) -> None:
        self.port, self.host = port, host
        self.sent = self.failed = 0
        self.requests: list[tuple[float, float]] = []  # (start, end), monotonic
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        conn = None
        while not self._stop.is_set() and time.monotonic() < deadline:
            conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            started = time.monotonic()
            ok = False
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = None
            with self.lock:
                self.sent += 1
                self.failed += not ok
                self.requests.append((started, time.monotonic()))
            time.sleep(0.02)

    def longest(self, start: float = 0.0, end: float = float("inf")) -> float:
        """The longest request that overlapped [start, end]."""
        with self.lock:
            return max((e - s for s, e in self.requests if e >= start and s <= end), default=0.0)

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


class LongConnection:
    """One kept-alive HTTP connection straight to a replica, used every
    100 ms: `dropped` once any request on it fails."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.requests, self.dropped = 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        while not self._stop.is_set() and time.monotonic() < deadline and not self.dropped:
            try:
                self.conn.request("GET", "/")
                resp = self.conn.getresponse()
                resp.read()
                self.dropped = resp.status != 200 or resp.will_close
                self.requests += 1
            except (OSError, http.client.HTTPException):
                self.dropped = True
            time.sleep(0.1)

    def __enter__(self) -> "LongConnection":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)
        self.conn.close()


def timed_push(user, args: list[str]) -> tuple[float, float, str]:
    """(the monotonic times of "Released vN" and of the push's last deploy
    line, the push output)."""
    proc = subprocess.Popen(["git", *args], cwd=user.src, env=user.env, text=True,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    released = last = None
    lines = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        now = time.monotonic()
        if "Released v" in line:
            released = now
        elif released is not None and ("is live at" in line or "hot-upgraded to" in line):
            last = now
    proc.wait(timeout=MAX_SECONDS)
    out = "".join(lines)
    if proc.returncode != 0 or released is None or last is None:
        raise SystemExit(f"push failed:\n{out}")
    return released, last, out


def measure(server, tmp: Path, name: str, hot: bool, replicas: int) -> dict:
    user, app = new_app(server, tmp / name, "elixir-counter", name)
    user.push()
    user.shipway("-a", app, "ps:scale", "--replicas", str(replicas))
    replica = user.shipway_json("-a", app, "ps")["replicas"][0]
    counter_v2(user.src)
    user.commit("0.2.0")
    args = (["-c", "http.extraheader=Shipway-Hot: true"] if hot else []) + ["push", "shipway", "main"]
    with Load(server.router_port, f"{app}.localhost") as load, \
            LongConnection(int(replica["host_port"])) as long_conn:
        time.sleep(0.5)
        steady_from = time.monotonic()
        time.sleep(2)
        steady_to = time.monotonic()
        released, last, out = timed_push(user, args)
        time.sleep(1)
    runner_step = re.search(r"hot deploy step: ([\d.]+) s", out)
    if hot and "hot-upgraded to" not in out:
        raise SystemExit(f"the hot push did not hot-upgrade:\n{out}")
    for line in out.splitlines():
        if any(k in line for k in ("installed and permanent", "hot deploy step:", "timing: ", "staged ")):
            print(line.replace("remote:", "").strip())
    return {"step": last - released,
            "runner_step": float(runner_step.group(1)) if runner_step else None,
            "pause": load.longest(released, last), "push_longest": load.longest(),
            "steady": load.longest(steady_from, steady_to),
            "sent": load.sent, "failed": load.failed,
            "long_conn": "survived" if not long_conn.dropped else
            f"dropped after {long_conn.requests} requests"}


def main() -> None:
    parser = argparse.ArgumentParser(description="Hot upgrade vs restart deploy of the Elixir example (issue 17).")
    parser.add_argument("--replicas", type=int, default=3, help="replicas of each app (3)")
    parser.add_argument("--stagger", action="store_true",
                        help="stage the replicas one after the other (the switch stays simultaneous)")
    parser.add_argument("--via", choices=["distribution", "exec"], default="distribution",
                        help="how Shipway reaches the conductor node: its distribution port "
                             "(default), or docker exec + erl_call (the fallback)")
    parser.add_argument("--hot-only", action="store_true", help="skip the restart deploy (no comparison)")
    args = parser.parse_args()
    # Read by the runner of the server the bench starts.
    os.environ[STAGGER_ENV] = "1" if args.stagger else "0"
    os.environ[VIA_ENV] = args.via
    with bench_server("hot-upgrade") as (server, tmp):
        rows = {"hot (OTP release upgrade)": measure(server, tmp, "hot", True, args.replicas)}
        if not args.hot_only:
            rows["restart deploy"] = measure(server, tmp, "restart", False, args.replicas)
    print("longest request: during the deploy step (the node pause), in 2 s of the same load "
          "before the push (steady), over the whole push (with the build)")
    label = (f"{args.replicas} replica(s){', staggered' if args.stagger else ''}"
             f"{', via exec' if args.via == 'exec' else ''}")
    print(f"{label:32} {'deploy step':>12} {'runner step':>12} "
          f"{'pause (step)':>13} {'steady':>8} {'push':>8} {'failed/sent':>12}  long-lived connection")
    for label, r in rows.items():
        runner = f"{r['runner_step']:.2f} s" if r["runner_step"] is not None else "-"
        print(f"{label:32} {r['step']:>10.2f} s {runner:>12} {r['pause'] * 1000:>10.0f} ms "
              f"{r['steady'] * 1000:>5.0f} ms {r['push_longest'] * 1000:>5.0f} ms "
              f"{r['failed']:>5}/{r['sent']:<6}  {r['long_conn']}")
    if args.hot_only:
        return
    hot, restart = rows.values()
    print(f"hot/restart: deploy step {hot['step'] / restart['step']:.2f}x, "
          f"pause {hot['pause'] / max(restart['pause'], 1e-6):.2f}x "
          f"(issue 17's goals: hot step <= 0.5 s, pause <= 50 ms, 0 failed, connection kept)")

if __name__ == "__main__":
    main()
