#!/usr/bin/env python3
"""Router overhead (issue 16): the router (the managed HAProxy, as `shipway
server` runs it) against a plain nginx with a static upstream to the same
replica, in one run, alternated round by round.

The replica is a static nginx on 127.0.0.1 (fast enough not to be the
bottleneck). Both proxies get one worker/thread, the same forwarded headers
and, for HTTPS, the same ECDSA P-256 certificate, each terminating its own
TLS. Modes (wrk, 1 thread, 16 connections, best of --rounds runs of
--seconds each):
- keep-alive: reused client connections;
- new connection per request (`Connection: close`);
- HTTPS with a new connection per request: each request a full TLS
  handshake (wrk resumes no session), so requests/s = handshakes/s.

Prints per proxy: requests/s, average latency, latency added over the
replica reached directly with keep-alive (its service time: both proxies
pool their upstream connections), the proxy's own CPU (master + workers, /proc) per
request; then the ratios against nginx and the issue's goals (added latency
and CPU per request <= 1.1x nginx's; TLS handshakes/s >= 0.9x nginx's).
Usage: .venv/bin/python bench/router_overhead.py [--seconds 3] [--rounds 2]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.router_candidates import proc_cpu, static_upstream  # noqa: E402
from core.settings import Settings  # noqa: E402
from router.haproxy import HAProxyRouter  # noqa: E402
from router.haproxy_tls import self_signed_pem  # noqa: E402
from router.interface import Route  # noqa: E402
from router.nginx import _children  # noqa: E402
from tests.conftest import free_port  # noqa: E402

HOST = "app.localhost"
MODES = ("keepalive", "new_conn", "https")


def wrk(url: str, seconds: int, close: bool, pids: set[int]) -> dict:
    """One wrk run; the CPU the given processes spent per request."""
    args = ["wrk", "-t1", "-c16", f"-d{seconds}s", "-H", f"Host: {HOST}"]
    if close:
        args += ["-H", "Connection: close"]
    cpu0 = proc_cpu(pids)
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 30).stdout
    cpu = proc_cpu(pids) - cpu0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[lat.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "lat_ms": float(lat.group(1)) * scale,
            "cpu_us": cpu / max(1.0, rps * seconds) * 1e6,
            "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else ""}


def plain_nginx(root: Path, upstream: int, pem_path: Path) -> tuple[subprocess.Popen, int, int]:
    """nginx, one worker, a static upstream (pooled keep-alive connections)
    to the replica, the router's forwarded headers; http and https ports."""
    port, tls_port = free_port(), free_port()
    (root / "logs").mkdir(parents=True)
    conf = root / "nginx.conf"
    conf.write_text(f"""daemon off; worker_processes 1; pid {root}/nginx.pid;
error_log {root}/logs/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  upstream replica {{ server 127.0.0.1:{upstream}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {pem_path};
    ssl_certificate_key {pem_path};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      proxy_pass http://replica;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Request-Start "t=$msec";
    }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-p", f"{root}/", "-c", str(conf), "-e", f"{root}/logs/error.log"])
    time.sleep(0.5)
    return proc, port, tls_port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shipway-overhead-"))
    pem = self_signed_pem(HOST)
    pem_path = tmp / "cert.pem"
    pem_path.write_text(pem)
    up_proc, up, _ = static_upstream(tmp / "replica")
    ng_proc, ng_port, ng_tls = plain_nginx(tmp / "nginx", up, pem_path)
    settings = Settings(data_dir=tmp / "router", router_port=free_port(), https_port=free_port(),
                        base_domain="localhost", router_workers=1)
    router = HAProxyRouter(settings)
    router.start()
    best: dict[str, dict[str, dict]] = {"direct": {}, "nginx": {}, "router": {}}
    try:
        router.set_route(Route("app", [HOST], [("127.0.0.1", up)]))
        assert router.tls is not None
        router.tls.install(HOST, pem)
        targets = {
            "direct": ({"keepalive": f"http://127.0.0.1:{up}/", "new_conn": f"http://127.0.0.1:{up}/"},
                       lambda: {up_proc.pid} | _children(up_proc.pid)),
            "nginx": ({"keepalive": f"http://127.0.0.1:{ng_port}/",
                       "new_conn": f"http://127.0.0.1:{ng_port}/",
                       "https": f"https://127.0.0.1:{ng_tls}/"},
                      lambda: {ng_proc.pid} | _children(ng_proc.pid)),
            "router": ({"keepalive": f"http://127.0.0.1:{settings.router_port}/",
                        "new_conn": f"http://127.0.0.1:{settings.router_port}/",
                        "https": f"https://127.0.0.1:{settings.https_port}/"},
                       lambda: {router.pid()} | _children(router.pid())),
        }
        for _ in range(args.rounds):
            for mode in MODES:
                for name, (urls, pids) in targets.items():
                    if mode not in urls:
                        continue
                    res = wrk(urls[mode], args.seconds, mode != "keepalive", pids())
                    if res["non2xx"] or res["socket_errors"]:
                        print(f"  {name} {mode}: non-2xx {res['non2xx']}, socket errors "
                              f"{res['socket_errors']}")
                    if mode not in best[name] or res["rps"] > best[name][mode]["rps"]:
                        best[name][mode] = res
    finally:
        router.stop()
        ng_proc.terminate()
        up_proc.terminate()
        ng_proc.wait(10)
        up_proc.wait(10)
    report(best, args)


def report(best: dict[str, dict[str, dict]], args: argparse.Namespace) -> None:
    print(f"\nwrk -t1 -c16, best of {args.rounds} x {args.seconds} s per mode; proxies: 1 worker")
    print(f"{'mode':10} {'path':7} {'req/s':>9} {'lat ms':>7} {'added ms':>9} {'proxy CPU us/req':>17}")
    for mode in MODES:
        # The replica's own service time (both proxies pool their upstream
        # connections, so a new client connection costs the replica nothing).
        direct = best["direct"]["keepalive"]
        for name in ("direct", "nginx", "router"):
            r = best[name].get(mode)
            if r is None or (name == "direct" and mode == "https"):
                continue
            added = r["lat_ms"] - direct["lat_ms"] if name != "direct" else float("nan")
            print(f"{mode:10} {name:7} {r['rps']:9.0f} {r['lat_ms']:7.3f} {added:9.3f} {r['cpu_us']:17.1f}")
    print("\nratios router / nginx (goal: added latency and CPU <= 1.1; TLS handshakes/s >= 0.9)")
    for mode in MODES:
        n, h = best["nginx"][mode], best["router"][mode]
        cpu = h["cpu_us"] / n["cpu_us"] if n["cpu_us"] else float("nan")
        line = f"  {mode:10} CPU/request {cpu:.2f} ({'met' if cpu <= 1.1 else 'NOT met'})"
        d = best["direct"]["keepalive"]["lat_ms"]
        na, ha = n["lat_ms"] - d, h["lat_ms"] - d
        lat = ha / na if na > 0 else float("nan")
        line += f"; added latency {lat:.2f} ({'met' if lat <= 1.1 else 'NOT met'})"
        if mode == "https":
            hs = h["rps"] / n["rps"]
            line += f"; handshakes/s {h['rps']:.0f} vs {n['rps']:.0f} = {hs:.2f} " \
                    f"({'met' if hs >= 0.9 else 'NOT met'})"
        print(line)


if __name__ == "__main__":
    main()
