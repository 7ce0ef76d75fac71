"""`logs -f` followers under a flood (issue 18, bad input and load): a
follower whose client never reads holds a bounded queue and is cut, while
another follower gets every line and the API keeps answering. Without the
per-follower producer (controller/api_follow.py) the server wrote every line
into the stuck connection's transport and its memory grew by the flood."""
from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.e2e.helpers import fetch, new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]

EMITTER = r'''
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        q = parse_qs(urlsplit(self.path).query)
        n, size, tag = int(q.get("n", ["0"])[0]), int(q.get("size", ["0"])[0]), q.get("tag", ["x"])[0]
        out = sys.stdout
        for i in range(n):
            out.write("flood %s %d %.6f %s\n" % (tag, i, time.time(), "p" * size))
        out.flush()
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
'''
# ~58 MB through the logs, in rounds of ~1.5 MB: each round fits in a
# follower's queue (2 MiB), so a live follower that reads more slowly than
# the burst comes (this test's Python reader on a busy machine) loses
# nothing; a larger burst would cost it lines by design.
ROUNDS, LINES, SIZE = 40, 1200, 1200


def _auth(home: Path) -> tuple[str, str]:
    words = (home / ".netrc").read_text().split()
    return words[words.index("login") + 1], words[words.index("password") + 1]


def _stuck_follower(url: str, auth: tuple[str, str], app: str) -> socket.socket:
    """A `logs -f` client that never reads (a small receive buffer, so the
    kernel holds little of the flood for it)."""
    host, port = url.split("//", 1)[1].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    sock.sendall(f"GET /api/apps/{app}/logs?lines=1&follow=true HTTP/1.1\r\nHost: {host}\r\n"
                 f"Authorization: Basic {token}\r\n\r\n".encode())
    return sock


def test_a_follower_that_never_reads_is_cut_and_holds_up_nobody(make_server,
                                                                  tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "home", "procfile", "slowfollow")
    (user.src / "serve.py").write_text(EMITTER)
    user.commit("emitter")
    user.push()
    auth = _auth(user.home)
    tag = f"t{int(time.time())}"

    seen: set[tuple[int, int]] = set()  # (round, line)
    notices: list[str] = []
    marker = f"flood {tag}r".encode()

    def live() -> None:
        with requests.get(f"{server.url}/api/apps/{app}/logs", auth=auth, stream=True,
                          params={"lines": 1, "follow": "true"}, timeout=(5, 120)) as r:
            for raw in r.iter_lines(chunk_size=65536):
                if marker in raw:
                    round_, index = raw.split(marker, 1)[1].split(b" ", 2)[:2]
                    seen.add((int(round_), int(index)))
                elif b"shipway: " in raw and b"dropped" in raw:
                    notices.append(raw.decode())
        notices.append(f"live follower ended after {len(seen)} lines")

    stuck = _stuck_follower(server.url, auth, app)
    threading.Thread(target=live, daemon=True).start()
    time.sleep(2)  # both are following
    proc = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
    before = proc.memory_info().rss
    slowest = 0.0
    for r in range(ROUNDS):
        assert fetch(server, app, f"/emit?n={LINES}&size={SIZE}&tag={tag}r{r}",
                     timeout=60).ok
        # Round by round, so the store's own queue bound never drops lines.
        wait_for(lambda: len(seen) >= (r + 1) * LINES or notices or None, timeout=60)
        # The reactor is not held up: another API call answers at once.
        started = time.monotonic()
        user_api = requests.get(f"{server.url}/api/apps/{app}", auth=auth, timeout=30)
        assert user_api.ok
        slowest = max(slowest, time.monotonic() - started)
    wait_for(lambda: len(seen) >= ROUNDS * LINES or notices or None, timeout=120)
    grown = proc.memory_info().rss - before
    print(f"server RSS grew {grown / 2**20:.1f} MiB for {ROUNDS * LINES * SIZE / 2**20:.0f} MiB "
          f"of lines; slowest API call {slowest * 1000:.0f} ms")
    assert not notices and len(seen) == ROUNDS * LINES, notices  # it missed nothing
    # The stuck connection held at most its bounded queue (2 MiB) and the
    # transport's 64 KiB, not the flood.
    assert grown < 30 * 2**20, f"server RSS grew {grown / 2**20:.1f} MiB"

    # Lines keep coming; the stuck follower, its buffers full, reads nothing
    # for 10 s and is cut (its last line, queued behind what it never read,
    # goes with the connection, aborted 10 s later) while the live one goes on.
    port = stuck.getsockname()[1]

    def stuck_open() -> bool:
        return any(c.raddr and c.raddr.port == port for c in proc.net_connections())

    more, deadline = 0, time.monotonic() + 90
    while stuck_open() and time.monotonic() < deadline:
        assert fetch(server, app, f"/emit?n=500&size={SIZE}&tag={tag}r{ROUNDS + more}").ok
        more += 1
        wait_for(lambda: len(seen) >= ROUNDS * LINES + 500 * more
                 or notices or None, timeout=60)
        time.sleep(0.5)
    assert not stuck_open(), "the follower that reads nothing is still connected"
    assert not notices, notices
    stuck.settimeout(60)
    got = b""
    try:
        while chunk := stuck.recv(1 << 20):
            got += chunk
    except ConnectionResetError:
        pass
    stuck.close()
    assert len(got) < ROUNDS * LINES * SIZE / 4, len(got)
