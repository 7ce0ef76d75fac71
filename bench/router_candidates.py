"""Router candidates side by side: the managed nginx (reloads) and HAProxy
(runtime API), against the same static nginx upstream on 127.0.0.1.

Measures, for each: keep-alive and new-connection-per-request throughput and
latency (wrk), proxy CPU per request, what happens to idle kept-alive client
connections across route changes, and the time one route change takes with
1,000 and 10,000 apps routed (plus HAProxy's memory then). First, nginx with
Debian's Lua module (a balancer reading a shared dict updated at run time, as
ingress-nginx does; bench/router_lua.py) against a plain nginx with a static
upstream and the HAProxy router, alternated in --rounds rounds.
Usage: .venv/bin/python bench/router_candidates.py [--seconds 4] [--rounds 3] [--lua-only]
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from router.haproxy import HAProxyRouter  # noqa: E402
from router.haproxy_conf import CHUNK, render_chunk, render_map, slot_backend  # noqa: E402
from router.interface import Route  # noqa: E402
import router.nginx  # noqa: E402
from router.nginx import NginxRouter, _children  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.conftest import free_port  # noqa: E402

HOST = "app.localhost"


def static_upstream(root: Path) -> tuple[subprocess.Popen, int, int]:
    """A plain nginx answering 200 "ok" on two ports (two "replicas"), fast
    enough not to be the bottleneck."""
    port, port2 = free_port(), free_port()
    (root / "logs").mkdir(parents=True)
    conf = root / "up.conf"
    conf.write_text(f"""daemon off; worker_processes 1; pid {root}/up.pid; error_log {root}/logs/e.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; listen 127.0.0.1:{port2}; location / {{ return 200 "ok"; }} }} }}
""")
    proc = subprocess.Popen(["nginx", "-p", f"{root}/", "-c", str(conf), "-e", f"{root}/logs/e.log"])
    time.sleep(0.3)
    return proc, port, port2


def proc_cpu(pids: set[int]) -> float:
    """CPU seconds used so far by these processes."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for entry in map(str, pids):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def rss_kb(pids: set[int]) -> int:
    """Resident memory of these processes (master and workers)."""
    total = 0
    for entry in map(str, pids):
        try:
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def wrk(port: int, seconds: int, close: bool, pids: set[int]) -> dict:
    args = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}"]
    if close:
        args += ["-H", "Connection: close"]
    cpu0 = proc_cpu(pids)
    out = subprocess.run(args + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    cpu = proc_cpu(pids) - cpu0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[lat.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "lat_ms": float(lat.group(1)) * scale,
            "cpu_us_per_req": cpu / max(1.0, rps * seconds) * 1e6,
            "non2xx": int(errors.group(1)) if errors else 0}


def idle_connections_across_changes(port: int, change, changes: int = 5, clients: int = 20) -> tuple[int, int]:
    """Idle kept-alive clients, a route change, one request each (no retry).
    Returns (failed requests, requests)."""
    failed = total = 0
    for _ in range(changes):
        conns = []
        for _ in range(clients):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/", headers={"Host": HOST})
            c.getresponse().read()
            conns.append(c)
        change()
        time.sleep(0.2)
        for c in conns:
            total += 1
            try:
                c.request("GET", "/", headers={"Host": HOST})
                r = c.getresponse()
                r.read()
                failed += r.status != 200
            except (OSError, http.client.HTTPException):
                failed += 1
            c.close()
    return failed, total


def throughput(port: int, seconds: int, pids, rounds: int = 3) -> dict:
    """Best of a few wrk runs per mode (the machine is shared: the best run
    is the one least disturbed by other work)."""
    best: dict = {}
    for _ in range(rounds):
        for mode, close in (("keepalive", False), ("new_conn", True)):
            res = wrk(port, seconds, close, pids())
            if mode not in best or res["rps"] > best[mode]["rps"]:
                best[mode] = res
    return best


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def bench_nginx(tmp: Path, up: int, up2: int, seconds: int) -> dict:
    s = Settings(data_dir=tmp / "nginx", router_port=free_port(), base_domain="localhost", router_workers=1)
    # A reload of 10,000 server blocks can take longer than the router's
    # 15 s on a loaded machine: the bench measures it rather than failing.
    router.nginx.APPLY_TIMEOUT = 300.0
    r = NginxRouter(s)
    r.start()
    result = {}
    try:
        r.set_route(Route("app", [HOST], [("127.0.0.1", up)]))
        result.update(throughput(s.router_port, seconds, lambda: {r.pid()} | _children(r.pid())))
        flip = [0]

        def change() -> None:
            flip[0] ^= 1
            r.set_route(Route("app", [HOST] + ([f"x.{HOST}"] if flip[0] else []), [("127.0.0.1", up)]))
        result["idle_across_route_change"] = idle_connections_across_changes(s.router_port, change)
        for n in (1000, 10000):
            routes = {f"a{i}": Route(f"a{i}", [f"a{i}.localhost"], [("127.0.0.1", up)]) for i in range(n)}
            routes["app"] = r.routes()["app"]
            r._apply(routes)  # bulk load, then time one ordinary change
            result[f"change_ms_{n}"] = round(timed(lambda: r.set_route(Route("a1", ["a1.localhost"], [("127.0.0.1", up2)]))), 1)
            r.wait_drained(30)
            result[f"rss_kb_{n}"] = rss_kb({r.pid()} | _children(r.pid()))
    finally:
        r.stop()
    return result


def bench_haproxy(tmp: Path, up: int, up2: int, seconds: int) -> dict:
    s = Settings(data_dir=tmp / "haproxy", router_port=free_port(), base_domain="localhost", router_workers=1)
    r = HAProxyRouter(s)
    r.start()
    result = {}
    try:
        r.set_route(Route("app", [HOST], [("127.0.0.1", up)]))
        result.update(throughput(s.router_port, seconds, lambda: {r.pid()} | _children(r.pid())))
        flip = [0]

        def change() -> None:  # a replica replaced (drained) and a name added/removed
            flip[0] ^= 1
            ups = [("127.0.0.1", up)] if flip[0] else [("127.0.0.1", up2)]
            r.set_route(Route("app", [HOST] + ([f"x.{HOST}"] if flip[0] else []), ups))
        result["idle_across_route_change"] = idle_connections_across_changes(s.router_port, change)
        result["idle_across_settings_reload"] = idle_connections_across_changes(s.router_port, r.reload, 3)
    finally:
        r.stop()
    for n in (1000, 10000):
        result.update(haproxy_scale(tmp / f"scale{n}", up, n))
    return result


def haproxy_scale(tmp: Path, up: int, n: int) -> dict:
    """n apps routed (files written in bulk, then loaded by start): one change timed."""
    s = Settings(data_dir=tmp, router_port=free_port(), base_domain="localhost", router_workers=1)
    r = HAProxyRouter(s, slots=n + CHUNK)
    Path(r.layout.conf_dir).mkdir(parents=True)
    routes = {i: Route(f"a{i}", [f"a{i}.localhost"], [("127.0.0.1", up)]) for i in range(n)}
    for chunk in range((n + CHUNK) // CHUNK):
        Path(r.layout.chunk_path(chunk)).write_text(
            render_chunk(chunk, {i: (rt.app, {"s1": rt.upstreams[0]})
                                 for i, rt in routes.items() if i // CHUNK == chunk}))
    Path(r.layout.map_path).write_text(render_map((f"a{i}.localhost", slot_backend(i)) for i in routes))
    start_ms = timed(r.start)
    try:
        times = {
            "upstream replaced": timed(lambda: r.set_route(Route("a7", ["a7.localhost"], [("127.0.0.2", up)]))),
            "scaled to 3": timed(lambda: r.set_route(Route("a7", ["a7.localhost"], [("127.0.0.2", up), ("127.0.0.3", up), ("127.0.0.4", up)]))),
            "hostname added": timed(lambda: r.set_route(Route("a7", ["a7.localhost", "b7.localhost"], [("127.0.0.2", up)]))),
            "new app": timed(lambda: r.set_route(Route("new", ["new.localhost"], [("127.0.0.1", up)]))),
            "app removed": timed(lambda: r.remove_route("a8")),
        }
        rss = rss_kb({r.pid()} | _children(r.pid()))
    finally:
        r.stop()
    return {f"change_ms_{n}": {k: round(v, 2) for k, v in times.items()},
            f"start_ms_{n}": round(start_ms), f"rss_kb_{n}": rss}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the nginx+Lua comparison")
    ap.add_argument("--lua-only", action="store_true", help="only nginx+Lua vs nginx vs HAProxy")
    args = ap.parse_args()
    if not shutil.which("wrk") or not shutil.which("haproxy"):
        sys.exit("needs wrk and haproxy (apt-get install wrk haproxy)")
    from bench.router_lua import LUA_MODULES, bench_lua  # it uses this module's helpers
    if not Path(LUA_MODULES, "ngx_http_lua_module.so").exists():
        sys.exit("needs Debian's libnginx-mod-http-lua (and lua-resty-core)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, up, up2 = static_upstream(tmp / "up")
        try:
            lua = bench_lua(tmp, up, up2, args.seconds, args.rounds)
            for key, value in lua.items():
                print(f"{key}: {value}", flush=True)
            if args.lua_only:
                return
            direct = throughput(up, args.seconds, lambda: {proc.pid} | _children(proc.pid))
            print("direct to upstream:", direct, flush=True)
            ha = bench_haproxy(tmp, up, up2, args.seconds)
            print("haproxy:", ha, flush=True)
            ng = bench_nginx(tmp, up, up2, args.seconds)
            print("nginx:", ng, flush=True)
        finally:
            proc.send_signal(signal.SIGQUIT)
            proc.wait(10)
    for mode in ("keepalive", "new_conn"):
        print(f"{mode}: haproxy/nginx rps {ha[mode]['rps'] / ng[mode]['rps']:.2f}x, "
              f"latency {ha[mode]['lat_ms'] / ng[mode]['lat_ms']:.2f}x, "
              f"cpu/req {ha[mode]['cpu_us_per_req'] / max(ng[mode]['cpu_us_per_req'], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
