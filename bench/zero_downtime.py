#!/usr/bin/env python3
"""Zero-downtime benchmark: steady load through nginx (keep-alive clients and
new-connection clients, loopback only, bounded) while the app is redeployed
by a git push, restarted, scaled 1→3→1 and reconfigured.

Prints, per action and in total, the requests sent and failed (goal: 0
failed), and the keep-alive retries (a request on a reused connection that
nginx closed while reloading, retried once as HTTP clients do).
Run: .venv/bin/python bench/zero_downtime.py [--clients N] [--pause S]
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.helpers import bench_server, fetch, new_app  # noqa: E402
from tests.e2e.load import BackgroundLoad  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4,
                        help="keep-alive clients, and as many new-connection clients")
    parser.add_argument("--pause", type=float, default=0.01, help="seconds between a client's requests")
    args = parser.parse_args()
    with bench_server("zero-downtime") as (server, tmp):
        user, app = new_app(server, tmp / "home", "procfile", "zd")
        user.push()
        assert fetch(server, app).status_code == 200
        serve = user.src / "serve.py"

        def redeploy() -> None:
            serve.write_text(serve.read_text() + "\n# touched\n")
            user.commit("one-line change")
            user.push()

        actions = [
            ("redeploy (git push)", redeploy),
            ("ps:restart", lambda: user.shipway("-a", app, "ps:restart")),
            ("scale 1 -> 3", lambda: user.shipway("-a", app, "ps:scale", "--replicas", "3")),
            ("scale 3 -> 1", lambda: user.shipway("-a", app, "ps:scale", "--replicas", "1")),
            ("config:set", lambda: user.shipway("-a", app, "config:set", f"GREETING=t{time.time():.0f}")),
        ]
        total_sent = total_failed = total_retried = 0
        print(f"{'action':<22} {'sent':>7} {'failed':>7} {'ka-retried':>10}  seconds  served")
        for name, action in actions:
            with BackgroundLoad("127.0.0.1", server.router_port, f"{app}.localhost",
                                keepalive_clients=args.clients, new_connection_clients=args.clients,
                                pause=args.pause, max_seconds=240) as load:
                time.sleep(1.0)
                started = time.monotonic()
                action()
                took = time.monotonic() - started
                time.sleep(1.5)
            retried = load.keepalive.retried + load.fresh.retried
            served = sorted(set(re.findall(r"release v\d+", " ".join(load.keepalive.bodies + load.fresh.bodies))))
            errors = dict(load.keepalive.errors + load.fresh.errors)
            print(f"{name:<22} {load.sent:>7} {load.failed:>7} {retried:>10}  {took:7.2f}  "
                  f"{', '.join(served)}{'  errors: ' + str(errors) if errors else ''}", flush=True)
            total_sent += load.sent
            total_failed += load.failed
            total_retried += retried
        print(f"{'TOTAL':<22} {total_sent:>7} {total_failed:>7} {total_retried:>10}")
        print(f"goal: 0 failed -> {'met' if total_failed == 0 else 'NOT met'}")
        return 0 if total_failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
