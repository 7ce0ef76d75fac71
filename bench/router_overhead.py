#!/usr/bin/env python3
"""Router overhead (issue 16): the router (the managed HAProxy, as `shipway
server` runs it) against a plain nginx with a static upstream to the same
replica, in one run, alternated round by round.

The replica is a static nginx on 127.0.0.1 (fast enough not to be the
bottleneck). Both proxies get one worker/thread, the same forwarded headers
and, for HTTPS, the same ECDSA P-256 certificate (TLS 1.3, X25519 on both),
each terminating its own TLS. Modes (wrk, 1 thread, 16 connections,
--rounds runs of --seconds each):
- keep-alive: reused client connections;
- new connection per request (`Connection: close`);
- HTTPS with a new connection per request and session resumption off on
  both proxies (wrk resumes TLS sessions whenever the server lets it), so
  each request is one full handshake: requests/s = handshakes/s.

The router must write one access line per request (issue 18); the plain
nginx writes none, so a second peer, "nginx+log", writes nginx's access log
(buffered, to a file) and the ratios are printed against both. As under
`shipway server`, the Shipway reader (logger/router_lines.py) pulls the
router's lines from its ring into a log store throughout: HAProxy's CPU
includes serving it. The reader's own CPU (a thread of the server, not of
the proxy; nginx+log's file writes are in nginx's own CPU) is printed
apart, per request, with the lines it received per request.

Prints per proxy: requests/s, average latency, latency added over the
replica reached directly with keep-alive (its service time: both proxies
pool their upstream connections), the proxy's own CPU (master + workers,
/proc) per request as min/median/max over the rounds; then the router /
peer ratios (median of the per-round ratios, with min and max: each round
runs the proxies back to back, so a round's ratio shares its noise) and the
issue's goals (added latency and CPU per request <= 1.1x nginx's; TLS
handshakes/s >= 0.9x nginx's).
Usage: .venv/bin/python bench/router_overhead.py [--seconds 3] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.router_candidates import proc_cpu, static_upstream  # noqa: E402
from core.settings import Settings  # noqa: E402
from router.haproxy import HAProxyRouter  # noqa: E402
from router.haproxy_tls import self_signed_pem  # noqa: E402
from router.interface import Route  # noqa: E402
from router.nginx import _children  # noqa: E402
from logger.router_lines import RouterLogReceiver  # noqa: E402
from logger.store import LogStore  # noqa: E402
from tests.conftest import free_port  # noqa: E402

HOST = "app.localhost"
MODES = ("keepalive", "new_conn", "https")


def thread_cpu(tid: int | None) -> float:
    """CPU seconds used so far by one thread of this process (0 if none)."""
    if tid is None:
        return 0.0
    try:
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The server's threads that carry an access line from HAProxy's ring to the
# disk: the reader, the store's fan-out and its SQLite writer. nginx+log
# pays for its log inside its own CPU, so their CPU is the router's too.
LINE_THREADS = ("logs-router", "logs-fanout", "logs-writer")


def pipeline_tids() -> list[int]:
    return [t.native_id for t in threading.enumerate()
            if t.name in LINE_THREADS and t.native_id is not None]


def wrk(url: str, seconds: int, close: bool, pids: set[int], lines: Callable[[], int] | None = None) -> dict:
    """One wrk run; the CPU the given processes spent per request (and, for
    the router, the reader thread's CPU and the lines it got per request)."""
    args = ["wrk", "-t1", "-c16", f"-d{seconds}s", "-H", f"Host: {HOST}"]
    if close:
        args += ["-H", "Connection: close"]
    cpu0, tids = proc_cpu(pids), pipeline_tids() if lines else []
    reader0, lines0 = sum(map(thread_cpu, tids)), lines() if lines else 0
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 30).stdout
    cpu = proc_cpu(pids) - cpu0
    # Per request wrk made (it runs a little past -d: dividing by req/s x
    # seconds would overstate lines per request).
    total = max(1, int(re.search(r"(\d+) requests in", out).group(1)))
    if lines:  # the lines of the last requests may still be on their way
        deadline = time.monotonic() + 5
        while lines() - lines0 < total and time.monotonic() < deadline:
            time.sleep(0.05)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[lat.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "lat_ms": float(lat.group(1)) * scale,
            "cpu_us": cpu / total * 1e6,
            "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else "",
            "reader_us": (sum(map(thread_cpu, tids)) - reader0) / total * 1e6,
            "lines": (lines() - lines0) / total if lines else 0.0}


def plain_nginx(root: Path, upstream: int, pem_path: Path,
                access_log: bool = False) -> tuple[subprocess.Popen, int, int]:
    """nginx, one worker, a static upstream (pooled keep-alive connections)
    to the replica, the router's forwarded headers; http and https ports
    (no TLS session resumption: every handshake is a full one)."""
    port, tls_port = free_port(), free_port()
    (root / "logs").mkdir(parents=True)
    conf = root / "nginx.conf"
    conf.write_text(f"""daemon off; worker_processes 1; pid {root}/nginx.pid;
error_log {root}/logs/error.log;
events {{ worker_connections 4096; }}
http {{
  {"access_log logs/access.log combined buffer=64k flush=1s;" if access_log else "access_log off;"}
  keepalive_requests 1000000;
  upstream replica {{ server 127.0.0.1:{upstream}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {pem_path};
    ssl_certificate_key {pem_path};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
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


def no_resumption(router: HAProxyRouter) -> None:
    """The router as deployed, but with TLS session resumption off (no
    tickets, no session cache) so that each handshake is a full one, as on
    the nginx peer: a settings reload of the bench's own copy."""
    main_conf = Path(router.layout.main_conf)
    text = main_conf.read_text()
    text = text.replace("\n    nbthread", "\n    tune.ssl.cachesize 0\n    nbthread", 1)
    text = re.sub(r"(bind \S+ ssl crt .*)\n", r"\1 no-tls-tickets\n", text, count=1)
    main_conf.write_text(text)
    router.reload()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shipway-overhead-"))
    pem = self_signed_pem(HOST)
    pem_path = tmp / "cert.pem"
    pem_path.write_text(pem)
    up_proc, up, _ = static_upstream(tmp / "replica")
    ng_proc, ng_port, ng_tls = plain_nginx(tmp / "nginx", up, pem_path)
    lg_proc, lg_port, lg_tls = plain_nginx(tmp / "nginx-log", up, pem_path, access_log=True)
    settings = Settings(data_dir=tmp / "router", router_port=free_port(), https_port=free_port(),
                        base_domain="localhost", router_workers=1)
    router = HAProxyRouter(settings)
    router.start()
    runs: dict[str, dict[str, list[dict]]] = {name: {m: [] for m in MODES} for name in TARGETS}
    excluded: dict[str, int] = {}
    store = LogStore(tmp / "logs.sqlite3")  # on disk, as the server's
    receiver = RouterLogReceiver(router.layout.admin_socket, store, router.app_for_backend)
    try:
        no_resumption(router)
        router.set_route(Route("app", [HOST], [("127.0.0.1", up)]))
        assert router.tls is not None
        router.tls.install(HOST, pem)
        receiver.start()  # as `shipway server` does, after the settings reload
        deadline = time.monotonic() + 10
        while receiver.sessions < 1 and time.monotonic() < deadline:
            time.sleep(0.05)

        def urls(port: int, tls_port: int) -> dict[str, str]:
            return {"keepalive": f"http://127.0.0.1:{port}/", "new_conn": f"http://127.0.0.1:{port}/",
                    "https": f"https://127.0.0.1:{tls_port}/"}

        targets = {
            "direct": ({"keepalive": f"http://127.0.0.1:{up}/", "new_conn": f"http://127.0.0.1:{up}/"},
                       lambda: {up_proc.pid} | _children(up_proc.pid)),
            "nginx": (urls(ng_port, ng_tls), lambda: {ng_proc.pid} | _children(ng_proc.pid)),
            "nginx+log": (urls(lg_port, lg_tls), lambda: {lg_proc.pid} | _children(lg_proc.pid)),
            "router": (urls(settings.router_port, settings.https_port),
                       lambda: {router.pid()} | _children(router.pid())),
        }
        for _ in range(args.rounds):
            for mode in MODES:
                for name, (target_urls, pids) in targets.items():
                    if mode not in target_urls:
                        continue
                    res = wrk(target_urls[mode], args.seconds, mode != "keepalive", pids(),
                              (lambda: receiver.lines) if name == "router" else None)
                    if res["non2xx"] or res["socket_errors"]:
                        # Not counted: a proxy answering errors is cheap.
                        print(f"  {name} {mode}: non-2xx {res['non2xx']}, socket errors "
                              f"{res['socket_errors']}: this round is left out")
                        excluded[name] = excluded.get(name, 0) + 1
                        res["failed"] = True
                    runs[name][mode].append(res)
    finally:
        receiver.stop()
        router.stop()
        store.close()
        for proc in (ng_proc, lg_proc, up_proc):
            proc.terminate()
        for proc in (ng_proc, lg_proc, up_proc):
            proc.wait(10)
    report(runs, args)
    if excluded:
        print(f"\nruns left out for errors: {excluded}")


TARGETS = ("direct", "nginx", "nginx+log", "router")


def spread(values: list[float]) -> str:
    if not values:
        return "no data"
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def verdict(values: list[float], ok: Callable[[float], bool]) -> str:
    return "no data" if not values else ("met" if ok(statistics.median(values)) else "NOT met")


def report(runs: dict[str, dict[str, list[dict]]], args: argparse.Namespace) -> None:
    print(f"\nwrk -t1 -c16, {args.rounds} rounds x {args.seconds} s per mode; proxies: 1 worker; "
          "figures are medians over the rounds, CPU min/median/max")
    print(f"{'mode':10} {'path':10} {'req/s':>9} {'lat ms':>7} {'added ms':>9}  proxy CPU us/req")
    direct_lat = statistics.median([r["lat_ms"] for r in runs["direct"]["keepalive"]
                                    if not r.get("failed")] or [0.0])
    for mode in MODES:
        for name in TARGETS:
            rs = [r for r in runs[name][mode] if not r.get("failed")]
            if not rs:
                continue
            lat = statistics.median(r["lat_ms"] for r in rs)
            added = lat - direct_lat if name != "direct" else float("nan")
            cpu = [r["cpu_us"] for r in rs]
            print(f"{mode:10} {name:10} {statistics.median(r['rps'] for r in rs):9.0f} {lat:7.3f} "
                  f"{added:9.3f}  {min(cpu):.1f} / {statistics.median(cpu):.1f} / {max(cpu):.1f}")
    print("\nthe Shipway line pipeline (reader, fan-out, SQLite writer: threads of the server, "
          "not counted above): CPU us/req min/median/max; access lines received per request "
          "(min; 1.00 = every request)")
    for mode in MODES:
        rs = [r for r in runs["router"][mode] if not r.get("failed")]
        if rs:
            reader = [r["reader_us"] for r in rs]
            print(f"  {mode:10} {spread(reader)}; lines/request {min(r['lines'] for r in rs):.3f}")
    print("\nratios router / peer, per round (min / median / max); goal: added latency and "
          "CPU <= 1.1, TLS handshakes/s >= 0.9")
    for peer in ("nginx", "nginx+log"):
        for mode in MODES:
            # A round's pair, unless either side of it had errors.
            pairs = [(h, n) for h, n in zip(runs["router"][mode], runs[peer][mode])
                     if not h.get("failed") and not n.get("failed")]
            cpu = [h["cpu_us"] / n["cpu_us"] for h, n in pairs if n["cpu_us"]]
            line = f"  vs {peer:10} {mode:10} CPU/request {spread(cpu)} ({verdict(cpu, lambda v: v <= 1.1)})"
            if peer == "nginx+log":  # both with their access log's whole cost
                whole = [(h["cpu_us"] + h["reader_us"]) / n["cpu_us"] for h, n in pairs if n["cpu_us"]]
                line += f"; with the line pipeline {spread(whole)} ({verdict(whole, lambda v: v <= 1.1)})"
            lat = [(h["lat_ms"] - direct_lat) / (n["lat_ms"] - direct_lat)
                   for h, n in pairs if n["lat_ms"] > direct_lat]
            if lat:
                line += f"; added latency {spread(lat)} ({verdict(lat, lambda v: v <= 1.1)})"
            if mode == "https":
                hs = [h["rps"] / n["rps"] for h, n in pairs if n["rps"]]
                line += f"; handshakes/s {spread(hs)} ({verdict(hs, lambda v: v >= 0.9)})"
            print(line)


if __name__ == "__main__":
    main()
