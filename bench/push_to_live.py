#!/usr/bin/env python3
"""Push-to-live benchmark: time from the start of `git push` to the new
version's first 200 through the router, for a cold first deploy (new app, empty
build cache) and a warm redeploy of a one-line change, for the Procfile and
the Elixir examples. Median of several runs, with the build / release /
deploy split read from the push's own progress lines as they stream.

The deploy is split further from the new web replica's own record (Docker's
created/started times and its entrypoint's timestamped log lines): the
container's start, the slug's download and unpack, the app's boot until
the health check passed, and routing.

Goal: warm <= 3 s, cold <= 10 s.
Run: .venv/bin/python bench/push_to_live.py [--runs N] [--examples procfile,elixir]
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logger.docker_collector import parse_docker_line, parse_docker_time  # noqa: E402
from tests.conftest import ShipwayServer  # noqa: E402
from tests.e2e.helpers import User, bench_server, fetch, new_app  # noqa: E402

# A one-line change per example: (file, old text, new text with {n}).
CHANGES = {
    "procfile": ("serve.py", "Hello from a Procfile", "Hello from a Procfile r{n}"),
    "nodejs": ("server.js", "Hello from Node.js", "Hello from Node.js r{n}"),
    "elixir": ("lib/hello.ex", '@marker "v1"', '@marker "r{n}"'),
}


def replica_marks(server: ShipwayServer, app: str, version: int, wall_start: float) -> dict[str, float]:
    """When the release's web replica was created, started, had its slug
    unpacked and exec'd the app, in seconds from the push's start."""
    client = docker.from_env()
    try:
        [container] = client.containers.list(all=True, filters={"label": [
            f"shipway.instance={server.instance}", f"shipway.app={app}",
            f"shipway.release={version}", "shipway.process=web"]})
        times = {"created": parse_docker_time(container.attrs["Created"]),
                 "started": parse_docker_time(container.attrs["State"]["StartedAt"])}
        for raw in container.logs(timestamps=True).splitlines():
            at, message = parse_docker_line(raw)
            if message.startswith("shipway: slug unpacked"):
                times.setdefault("unpacked", at)
            elif message.startswith("shipway: starting "):
                times.setdefault("exec", at)
        return {k: v.timestamp() - wall_start for k, v in times.items() if v is not None}
    finally:
        client.close()


def timed_push(user: User, server: ShipwayServer, app: str, version: int) -> dict[str, float]:
    """Push, timestamping the pipeline's lines, while polling the router for the
    first 200 that comes from release `version`."""
    marks: dict[str, float] = {}
    stop = threading.Event()
    expected = f"(release v{version})"

    def poll() -> None:
        deadline = time.monotonic() + 900
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                r = fetch(server, app, timeout=2)
                if r.status_code == 200 and expected in r.text:
                    marks["first_200"] = time.monotonic()
                    return
            except requests.RequestException:
                pass
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    wall_start = time.time()
    start = time.monotonic()
    poller.start()
    proc = subprocess.Popen(["git", "push", "shipway", "main"], cwd=str(user.src), env=user.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    tail: list[str] = []
    buf = b""
    while True:
        chunk = proc.stderr.read1(4096)
        if not chunk:
            break
        buf += chunk
        *lines, buf = re.split(rb"[\r\n]", buf)
        now = time.monotonic()
        for raw in lines:
            line = raw.decode(errors="replace")
            tail = (tail + [line])[-30:]
            if "-----> Building" in line:
                marks.setdefault("building", now)
            elif re.search(r"Released v\d+", line):
                marks.setdefault("released", now)
            elif "-----> Starting" in line:
                marks.setdefault("starting", now)
            elif "web replica" in line and "healthy on port" in line:
                marks.setdefault("healthy", now)
            elif "is live at" in line:
                marks.setdefault("live", now)
    if proc.wait() != 0:
        stop.set()
        raise RuntimeError("push failed:\n" + "\n".join(tail))
    marks["pushed"] = time.monotonic()
    poller.join(60)
    stop.set()
    if "first_200" not in marks:
        raise RuntimeError(f"{expected} never answered through the router")
    rel = {k: v - start for k, v in marks.items()}
    replica = replica_marks(server, app, version, wall_start)
    return {
        "total": rel["first_200"],
        "build": rel.get("released", 0.0),
        "release": rel.get("starting", 0.0) - rel.get("released", 0.0),
        "deploy": rel.get("live", 0.0) - rel.get("starting", 0.0),
        "push_returned": rel["pushed"],
        # the deploy's parts
        "container_start": replica["started"] - rel["starting"],
        "slug_unpack": replica["unpacked"] - replica["started"],
        "app_boot": rel["healthy"] - replica["unpacked"],
        "route": rel["live"] - rel["healthy"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--examples", default="procfile,elixir")
    args = parser.parse_args()
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with bench_server("push-to-live") as (server, tmp):
        for example in args.examples.split(","):
            path, old, new = CHANGES[example]
            for run in range(args.runs):
                user, app = new_app(server, tmp / f"home-{example}-{run}", example, f"{example[:4]}{run}")
                cold = timed_push(user, server, app, 1)
                results.setdefault((example, "cold"), []).append(cold)
                source = user.src / path
                text = source.read_text()
                assert old in text, f"{example}: {old!r} not in {path}"
                source.write_text(text.replace(old, new.format(n=run), 1))
                user.commit("one-line change")
                warm = timed_push(user, server, app, 2)
                results.setdefault((example, "warm"), []).append(warm)
                print(f"{example} run {run + 1}: cold {cold['total']:.2f} s, "
                      f"warm {warm['total']:.2f} s", flush=True)
                user.shipway("-a", app, "apps:destroy", "--confirm", app)
        print(f"\nmedian of {args.runs} run(s), seconds from `git push` to the first 200 of "
              "the new release through the router:")
        print(f"  {'example':<9} {'kind':<5} {'total':>7} {'build':>7} {'release':>8} "
              f"{'deploy':>7} {'push returned':>14}  goal")
        met = True
        for (example, kind), rows in results.items():
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            goal = 3.0 if kind == "warm" else 10.0
            ok = med["total"] <= goal
            met &= ok
            print(f"  {example:<9} {kind:<5} {med['total']:>7.2f} {med['build']:>7.2f} "
                  f"{med['release']:>8.2f} {med['deploy']:>7.2f} {med['push_returned']:>14.2f}  "
                  f"<= {goal:g} s {'met' if ok else 'NOT met'}")
        print("  (build = push start to 'Released vN': upload, build, slug stored; "
              "release = to the first replica starting; deploy = start, health, route)")
        print("\nthe deploy's parts (medians, seconds):")
        print(f"  {'example':<9} {'kind':<5} {'container start':>16} {'slug download+unpack':>21} "
              f"{'app boot to healthy':>20} {'route':>6}")
        for (example, kind), rows in results.items():
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            print(f"  {example:<9} {kind:<5} {med['container_start']:>16.2f} "
                  f"{med['slug_unpack']:>21.2f} {med['app_boot']:>20.2f} {med['route']:>6.2f}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
