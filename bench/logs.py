"""bench/logs: a replica's lines through Shipway's logger, against `docker
logs -f` on the same container in the same run.

One real `shipway server` (Docker runner, HAProxy router), one deployed app
whose `/emit?n=N` writes N stamped lines as fast as Python can. Measured at
once, on the same lines: a syslog TCP drain on 127.0.0.1, one `logs -f`
follower (the API's NDJSON stream) and `docker logs -f` of the replica.
Printed: lines per second each received, p50/p99 latency from the app's
write to the follower and to `docker logs -f`, then the server's resident
memory with 1,000 idle followers attached (and one line reaching all of
them); then a flood (`--flood-mbps`, 10 MB/s, and flat out, for
`--flood-seconds`): the follower's and `docker logs -f`'s latency, the
server's memory, another API call's latency meanwhile, and the app's print
rate with Shipway collecting against the same with the server stopped.
Every wait has a deadline; a run takes ~2-3 min.

    .venv/bin/python bench/logs.py [--lines 50000] [--followers 1000] [--rate 5000]
        [--flood-mbps 10] [--flood-seconds 5] [--profile FILE]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script too

import psutil
import requests

from tests.conftest import ShipwayServer, _stop_nginx, remove_docker_objects
from tests.e2e.helpers import fetch, new_app, wait_for
from tests.logger.test_drains import SyslogServer

EMITTER = r'''
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        q = parse_qs(urlsplit(self.path).query)
        n = int(q.get("n", ["0"])[0])
        tag = q.get("tag", ["x"])[0]
        rate = float(q.get("rate", ["0"])[0])  # lines/s; 0: as fast as possible
        out = sys.stdout
        start = time.time()
        for i in range(n):
            out.write("bench %s %d %.6f %s\n" % (tag, i, time.time(), "p" * 60))
            if i % 100 == 0:
                out.flush()
                if rate:
                    time.sleep(max(0.0, start + i / rate - time.time()))
        out.flush()
        if self.path.startswith("/flood"):  # MB/s for some seconds (0: flat out)
            mbps, seconds = float(q["mbps"][0]), float(q["seconds"][0])
            # 64 lines a write, the first stamped (the bench's readers look
            # at that one only: at flat out they must keep up with the app)
            line = "flood " + "f" * 1000 + "\n"
            first = "bench %s %%d %%.6f %s\n" % (tag, "f" * 980)
            raw, sent, start, i = sys.stdout.buffer, 0, time.time(), 0
            rest = (line * 63).encode()
            while time.time() - start < seconds:
                block = (first % (i, time.time())).encode() + rest
                raw.write(block)
                raw.flush()
                sent += len(block)
                i += 1
                if mbps:
                    time.sleep(max(0.0, start + sent / (mbps * 1e6) - time.time()))
            body = ("%d %.6f %d" % (sent, time.time() - start, i)).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body)))
            self.end_headers(); self.wfile.write(body)
            return
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
'''


class Collector:
    """Lines `bench TAG I T` seen by one consumer: count, latencies, span,
    and the latency after Docker's own stamp when the consumer shows it."""

    def __init__(self, tag: str) -> None:
        self.tag = tag.encode()
        self.latencies: list[float] = []
        self.stamps: list[tuple[float, bytes]] = []  # (arrival, Docker's stamp)
        self.first = self.last = 0.0

    def see(self, raw: bytes, now: float | None = None) -> None:
        at = raw.find(b"bench " + self.tag + b" ")
        if at < 0:
            return
        parts = raw[at:].split(b" ", 4)
        now = now or time.time()
        self.latencies.append(now - float(parts[3]))
        stamp = _STAMP.search(raw, 0, at)
        if stamp:
            self.stamps.append((now, stamp.group()))
        self.first = self.first or now
        self.last = now

    def report(self, name: str, total: int) -> str:
        got = len(self.latencies)
        lat = sorted(self.latencies) or [float("nan")]
        rate = got / max(self.last - self.first, 1e-6) if got > 1 else 0.0
        after = sorted(now - _docker_time(stamp) for now, stamp in self.stamps)
        return (f"{name:<18} {got:>7}/{total} lines  {rate:>9,.0f} lines/s  "
                f"p50 {_pct(lat, 0.5) * 1000:7.1f} ms  p99 {_pct(lat, 0.99) * 1000:7.1f} ms"
                + (f"  (after Docker's stamp p50 {_pct(after, 0.5) * 1000:.0f}, "
                   f"p99 {_pct(after, 0.99) * 1000:.0f} ms)" if after else ""))


_STAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")


def _docker_time(stamp: bytes) -> float:
    whole, _, fraction = stamp[:-1].decode().partition(".")
    return (dt.datetime.fromisoformat(whole).replace(tzinfo=dt.timezone.utc).timestamp()
            + float("0." + fraction))


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


NOTICES: list[str] = []  # what the server told the follower (drops, cut)


def _follow_api(server: ShipwayServer, user_env: dict, app: str, sinks: list[Collector],
                stop: threading.Event) -> None:
    """The follower, in large reads, looking at stamped lines only (with
    requests' iter_lines this script fell behind a flat-out flood)."""
    import base64
    import http.client

    host, port = server.url.split("//", 1)[1].split(":")
    token = base64.b64encode(":".join(_auth(user_env)).encode()).decode()
    conn = http.client.HTTPConnection(host, int(port), timeout=120)  # quiet between phases
    conn.request("GET", f"/api/apps/{app}/logs?lines=1&follow=true",
                 headers={"Authorization": f"Basic {token}"})
    response = conn.getresponse()
    buf, data = b"", b"-"
    try:
        while data and not stop.is_set():
            data = response.read1(1 << 20)
            lines = (buf + data).split(b"\n")
            buf = lines.pop()
            for raw in lines:
                if b"bench " in raw:
                    for sink in sinks:
                        sink.see(raw)
                elif b"shipway: " in raw:  # lines dropped for it, or it was cut
                    NOTICES.append(json.loads(raw)["log"])
    except (OSError, http.client.HTTPException):  # the server stopped at the end
        pass
    conn.close()


def _notices() -> str:
    """The lines the server said it dropped for the follower since last asked."""
    dropped = sum(int(text.split()[1]) for text in NOTICES if text.split()[1].isdigit())
    cut = any("disconnected" in text for text in NOTICES)
    NOTICES.clear()
    return (f"  [server: {dropped} lines dropped for this follower]" if dropped else "") + (
        "  [server: follower cut]" if cut else "")


def _auth(user_env: dict) -> tuple[str, str]:
    netrc = Path(user_env["HOME"]) / ".netrc"
    words = netrc.read_text().split()
    return words[words.index("login") + 1], words[words.index("password") + 1]


def _idle_followers(server: ShipwayServer, auth: tuple[str, str], app: str,
                    count: int) -> list[socket.socket]:
    import base64
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    host, port = server.url.split("//", 1)[1].split(":")
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(f"GET /api/apps/{app}/logs?lines=1&follow=true HTTP/1.1\r\n"
                  f"Host: {host}\r\nAuthorization: Basic {token}\r\n\r\n".encode())
        socks.append(s)
    return socks


def _flood(server: ShipwayServer, user_env: dict, app: str, mbps: float,
           seconds: float, sinks: tuple[list[Collector], list[Collector]]) -> None:
    """A replica printing `mbps` MB/s (then flat out) for `seconds`: the
    server's memory, how fast another API call answers meanwhile, and the
    app's own print rate with Shipway collecting and with the server
    stopped (SIGSTOP: Docker's json-file driver takes the lines either way,
    so the difference is what Shipway's reading costs the app)."""
    import signal

    auth = _auth(user_env)
    proc = psutil.Process(server.proc.pid)  # type: ignore[union-attr]

    def one(rate: float, tag: str) -> tuple[float, float, float, float, int]:
        """(app MB/s, server RSS growth MiB, API p50 ms, API max ms, stamped lines)."""
        before, peak, calls, done = proc.memory_info().rss, 0, [], threading.Event()

        def probe() -> None:
            nonlocal peak
            while not done.is_set():
                started = time.monotonic()
                try:
                    requests.get(f"{server.url}/api/apps/{app}", auth=auth, timeout=30)
                    calls.append(time.monotonic() - started)
                except requests.RequestException:
                    calls.append(30.0)
                if proc.status() != psutil.STATUS_STOPPED:
                    peak = max(peak, proc.memory_info().rss)
                time.sleep(0.2)

        probing = threading.Thread(target=probe, daemon=True)
        if proc.status() != psutil.STATUS_STOPPED:
            probing.start()
        sent, took, stamped = fetch(server, app, f"/flood?mbps={rate}&seconds={seconds}"
                                    f"&tag={tag}", timeout=seconds + 60).text.split()
        done.set()
        if probing.is_alive():
            probing.join(40)
        calls.sort()
        return (int(sent) / float(took) / 1e6, (max(peak, before) - before) / 2**20,
                calls[len(calls) // 2] * 1000 if calls else float("nan"),
                calls[-1] * 1000 if calls else float("nan"), int(stamped))

    for rate in (mbps, 0.0):
        name = f"{rate:g} MB/s" if rate else "flat out"
        tag = f"f{rate:g}x{int(time.time())}"
        follower, peer = Collector(tag), Collector(tag)
        sinks[0].append(follower)
        sinks[1].append(peer)
        collected = one(rate, tag)
        deadline = time.time() + 30  # the last lines reach both readers (or are lost)
        while time.time() < deadline and min(len(follower.latencies),
                                             len(peer.latencies)) < collected[4]:
            time.sleep(0.2)
        sinks[0].remove(follower)
        sinks[1].remove(peer)
        proc.send_signal(signal.SIGSTOP)
        try:
            alone = one(rate, "alone")[0]
        finally:
            proc.send_signal(signal.SIGCONT)
        time.sleep(seconds)  # the collector catches up on what the stop held back
        print(f"flood {name} for {seconds:g} s: app printed {collected[0]:.1f} MB/s with Shipway "
              f"collecting, {alone:.1f} MB/s with the server stopped "
              f"({collected[0] / alone:.2f}x); server RSS +{collected[1]:.0f} MiB; "
              f"API call p50 {collected[2]:.0f} ms, max {collected[3]:.0f} ms")
        sent = collected[4]  # stamped lines the app wrote (1 in 64)
        print(follower.report("  logs -f (Shipway)", sent) + _notices())
        print(peer.report("  docker logs -f", sent))
    print(f"server RSS after the floods: {proc.memory_info().rss / 2**20:.0f} MiB")


def _profile(pid: int, path: str) -> subprocess.Popen:
    """py-spy sampling every thread of the server until interrupted."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    proc = subprocess.Popen([spy, "record", "-p", str(pid), "-o", path, "-f", "raw",
                             "-r", "250", "--threads", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ})
    time.sleep(1)  # attached before the burst starts
    return proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0,
                        help="lines/s the app writes at (0: as fast as it can)")
    parser.add_argument("--flood-mbps", type=float, default=10,
                        help="the flood phase: MB/s the replica prints (0: skip the phase)")
    parser.add_argument("--flood-seconds", type=float, default=5)
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy (pip install py-spy) samples the server's threads "
                             "during the burst into FILE (collapsed stacks)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    drain = SyslogServer()
    server = ShipwayServer(tmp / "data", env={"SHIPWAY_FETCH_ALLOW": "127.0.0.1"})
    docker_proc = None
    stop = threading.Event()
    try:
        server.start()
        user, app = new_app(server, tmp / "home", "procfile", "benchlogs")
        (user.src / "serve.py").write_text(EMITTER)
        user.commit("emitter")
        user.push()
        user.shipway("-a", app, "drains:add", f"syslog://127.0.0.1:{drain.port}")
        container = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=shipway.app={app}",
             "--filter", "label=shipway.role=run", "--filter", "label=shipway.process=web"],
            capture_output=True, text=True, check=True).stdout.split()[0]
        tag = f"t{int(time.time())}"
        print(f"replica container {container[:12]}")
        follower, docker_sink, drain_sink = Collector(tag), Collector(tag), Collector(tag)
        follower_sinks, docker_sinks = [follower], [docker_sink]  # the flood adds its own
        threading.Thread(target=_follow_api, args=(server, user.env, app, follower_sinks, stop),
                         daemon=True).start()
        docker_proc = subprocess.Popen(["docker", "logs", "-f", "-t", "--tail", "0", container],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def read_docker() -> None:
            assert docker_proc is not None and docker_proc.stdout is not None
            for raw in docker_proc.stdout:
                for sink in docker_sinks:
                    sink.see(raw)

        threading.Thread(target=read_docker, daemon=True).start()
        time.sleep(2)
        server_proc = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
        cpu_before, own_before = sum(server_proc.cpu_times()[:2]), time.process_time()
        spy = _profile(server_proc.pid, args.profile) if args.profile else None
        started = time.time()
        assert fetch(server, app, f"/emit?n={args.lines}&tag={tag}&rate={args.rate}", timeout=120).ok
        emit_seconds = time.time() - started
        deadline = time.time() + 60
        while time.time() < deadline and min(len(follower.latencies),
                                             len(docker_sink.latencies)) < args.lines:
            time.sleep(0.2)
        wait_for(lambda: sum(1 for m in drain.messages if tag.encode() in m) >= args.lines
                 or None, timeout=30)
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
            spy.wait(30)
        for raw, arrived in zip(list(drain.messages), list(drain.arrivals)):
            drain_sink.see(raw, arrived)
        cpu = sum(server_proc.cpu_times()[:2]) - cpu_before
        own = time.process_time() - own_before
        print(f"app wrote {args.lines} lines in {emit_seconds:.2f} s "
              f"({args.lines / emit_seconds:,.0f} lines/s); the server used {cpu:.2f} s of CPU "
              f"for them ({cpu / args.lines * 1e6:.1f} µs a line, follower and drain included); "
              f"this script's readers {own:.2f} s")
        print(follower.report("logs -f (Shipway)", args.lines) + _notices())
        print(docker_sink.report("docker logs -f", args.lines))
        print(drain_sink.report("syslog drain", args.lines))
        listed = user.shipway_json("-a", app, "drains")
        print(f"drain: sent {listed[0]['sent']} dropped {listed[0]['dropped']}")

        proc = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
        before = proc.memory_info().rss
        socks = _idle_followers(server, _auth(user.env), app, args.followers)
        time.sleep(3)
        during = proc.memory_info().rss
        fetch(server, app, f"/emit?n=1&tag=all{tag}")
        time.sleep(3)
        reached = 0
        for s in socks:
            s.settimeout(0.01)
            try:
                reached += (f"all{tag}".encode() in s.recv(1 << 20))
            except OSError:
                pass
        print(f"{args.followers} followers: server RSS {before / 2**20:.0f} MiB -> "
              f"{during / 2**20:.0f} MiB ({(during - before) / args.followers / 1024:.1f} "
              f"KiB each); one new line reached {reached} of them within 3 s")
        for s in socks:
            s.close()
        # The server tears the 1,000 connections down at once (~0.15 s of the
        # reactor): let that pass, or it lands in the flood's API latency.
        time.sleep(3)
        if args.flood_mbps:
            _flood(server, user.env, app, args.flood_mbps, args.flood_seconds,
                   (follower_sinks, docker_sinks))
        print(json.dumps({"ok": True}))
    finally:
        stop.set()
        if docker_proc is not None:
            docker_proc.kill()
        drain.close()
        server.stop()
        remove_docker_objects(server.instance)
        _stop_nginx(server.data_dir)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
