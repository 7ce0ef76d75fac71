"""HAProxy's access lines as Heroku-style router lines, through a real
abstract unix stream socket, octet counted as HAProxy's ring forwards them."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from logger.router_lines import RouterLogReceiver, octet_frames, router_line
from logger.store import LogStore


def test_access_line_becomes_a_router_line() -> None:
    raw = b'shipway-access app00003 GET "/a%20b?x=1" 200 73 12 1 10.0.0.9\n'
    assert router_line(raw) == ("app00003", 'at=info method=GET path="/a%20b?x=1" status=200 '
                                'bytes=73 connect=1ms service=12ms fwd="10.0.0.9"')
    failed = router_line(b'shipway-access app00003 GET "/" 503 0 3 -1 10.0.0.9')
    assert failed is not None and failed[1].startswith("at=error ") and "connect=0ms" in failed[1]
    assert router_line(b"something else") is None


def test_octet_frames_keep_a_partial_frame_for_the_next_read() -> None:
    buffer = bytearray(b"3 abc5 hello2 h")
    assert octet_frames(buffer) == [b"abc", b"hello"]
    assert buffer == b"2 h"
    buffer += b"i"
    assert octet_frames(buffer) == [b"hi"] and buffer == b""
    with pytest.raises(ValueError):
        octet_frames(bytearray(b"GET / HTTP/1.1\r\nHost: x\r\n"))


def test_receiver_adds_lines_of_the_backends_app(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.sqlite3")
    path = str(tmp_path / "access.sock")
    receiver = RouterLogReceiver(path, store, {"app00001": "shop"}.get)
    receiver.start()
    name = path.encode()
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sender.connect(b"\0" + name + b"\0" * (107 - len(name)))  # as HAProxy's abns@ connects
    lines = [b'shipway-access app00001 GET "/" 200 5 2 0 127.0.0.1',
             b'shipway-access app09999 GET "/" 200 5 2 0 127.0.0.1',
             b'shipway-access app00001 POST "/b" 201 0 7 1 127.0.0.1']
    stream = b"".join(b"%d %s" % (len(line), line) for line in lines)
    sender.sendall(stream[:30])  # a frame split across two reads
    time.sleep(0.1)
    sender.sendall(stream[30:])
    deadline = time.monotonic() + 5
    while len(store.tail("shop", 5)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [line.format().split(" ", 1)[1] for line in store.tail("shop", 5)] == [
        'shipway[router]: at=info method=GET path="/" status=200 bytes=5 connect=0ms '
        'service=2ms fwd="127.0.0.1"',
        'shipway[router]: at=info method=POST path="/b" status=201 bytes=0 connect=1ms '
        'service=7ms fwd="127.0.0.1"']
    assert receiver.unparsed == 1
    sender.close()
    receiver.stop()
    store.close()
