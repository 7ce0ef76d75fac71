"""HAProxy's access datagrams as Heroku-style router lines, through a real
abstract unix datagram socket."""
from __future__ import annotations

import socket
from pathlib import Path

from logger.router_lines import RouterLogReceiver, router_line
from logger.store import LogStore


def test_access_datagram_becomes_a_router_line() -> None:
    raw = b'shipway-access app00003 GET "/a%20b?x=1" 200 73 12 0 1 10 10.0.0.9\n'
    assert router_line(raw) == ("app00003", 'at=info method=GET path="/a%20b?x=1" status=200 '
                                'bytes=73 connect=1ms service=12ms fwd="10.0.0.9"')
    failed = router_line(b'shipway-access app00003 GET "/" 503 0 3 -1 -1 -1 10.0.0.9')
    assert failed is not None and failed[1].startswith("at=error ") and "connect=0ms" in failed[1]
    assert router_line(b"something else") is None


def test_receiver_adds_lines_of_the_backends_app(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.sqlite3")
    path = str(tmp_path / "access.sock")
    receiver = RouterLogReceiver(path, store, {"app00001": "shop"}.get)
    receiver.start()
    name = path.encode()
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = b"\0" + name + b"\0" * (107 - len(name))  # as HAProxy's abns@ sends
    sender.sendto(b'shipway-access app00001 GET "/" 200 5 2 0 0 2 127.0.0.1\n', address)
    sender.sendto(b'shipway-access app09999 GET "/" 200 5 2 0 0 2 127.0.0.1\n', address)
    import time
    deadline = time.monotonic() + 5
    while not store.tail("shop", 5) and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = store.tail("shop", 5)
    assert [line.format().split(" ", 1)[1] for line in lines] == [
        'shipway[router]: at=info method=GET path="/" status=200 bytes=5 connect=0ms '
        'service=2ms fwd="127.0.0.1"']
    receiver.stop()
    store.close()
