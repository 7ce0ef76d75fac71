"""Issue 14, finding 8: a pusher that hangs up before report-status is
logged as one info line (app and reason), not as a crash with a traceback."""
from __future__ import annotations

import base64
import socket
import subprocess
import time
from pathlib import Path

import pytest
from dulwich.protocol import pkt_line

from tests.gitd.gitkit import Pusher

ZERO = "0" * 40


@pytest.mark.parametrize("when", ["at once", "after the first progress"])
def test_hangup_before_report_is_one_info_line(make_server, tmp_path: Path, when: str) -> None:
    server = make_server()
    pusher = Pusher(server, server.signup(), tmp_path / "home", register_key=False)
    app = pusher.create_app()
    repo = pusher.new_repo()
    head = pusher.head(repo)
    pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs"], cwd=repo,
                          input=b"HEAD\n", capture_output=True, check=True).stdout
    body = (pkt_line(f"{ZERO} {head} refs/heads/stored\0report-status side-band-64k\n"
                     .encode()) + pkt_line(None) + pack)
    auth = base64.b64encode(f"{pusher.user.email}:{pusher.user.api_key}".encode()).decode()
    request = (f"POST /{app}.git/git-receive-pack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Basic {auth}\r\n"
               f"Content-Type: application/x-git-receive-pack-request\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", server.http_port)) as sock:
        sock.sendall(request)
        if when != "at once":  # the push is under way: the report is next
            sock.settimeout(30)
            assert sock.recv(1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")

    deadline = time.time() + 20
    while time.time() < deadline and "the client hung up" not in server.log():
        time.sleep(0.2)
    log = server.log()
    assert f"{app}" in log and "the client hung up" in log, log[-3000:]
    assert "crashed" not in log and "Traceback" not in log, log[-3000:]
