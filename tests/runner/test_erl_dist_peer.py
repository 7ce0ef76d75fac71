"""runner/erl_dist.py against a hostile node: a real socket peer (a thread
doing the node's side of the handshake with the app's cookie, then sending
what a node under the app owner's control could) and hostile term bytes.
Whatever it sends, the client raises ErlDistError, within the call's
deadline, and holds no socket of a failed handshake."""
from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from typing import Any, Callable

import pytest

from runner import erl_dist
from runner.erl_dist import Atom, ErlDistError, NodeConnection, decode, encode

COOKIE = "the-apps-cookie"


def _read(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def _hs_recv(sock: socket.socket) -> bytes:
    return _read(sock, struct.unpack(">H", _read(sock, 2))[0])


def _hs_send(sock: socket.socket, body: bytes) -> None:
    sock.sendall(struct.pack(">H", len(body)) + body)


def node_handshake(sock: socket.socket, status: bytes = b"ok") -> None:
    """The node's side of the version 6 handshake."""
    assert _hs_recv(sock)[:1] == b"N"
    _hs_send(sock, b"s" + status)
    if status != b"ok":
        return
    challenge = 123456
    name = b"app@10.0.0.2"
    _hs_send(sock, b"N" + struct.pack(">QIIH", 0x1000000 | 0x4 | 0x10000, challenge, 7, len(name)) + name)
    reply = _hs_recv(sock)
    assert reply[:1] == b"r" and reply[5:21] == hashlib.md5(f"{COOKIE}{challenge}".encode()).digest()
    ours = struct.unpack(">I", reply[1:5])[0]
    _hs_send(sock, b"a" + hashlib.md5(f"{COOKIE}{ours}".encode()).digest())


def read_request(sock: socket.socket) -> tuple[Any, Any]:
    """(the caller's pid, the call's ref) of the next rpc request."""
    while True:
        n = struct.unpack(">I", _read(sock, 4))[0]
        if n:
            break
    frame = _read(sock, n)
    _control, at = decode(frame, 2)
    message, _ = decode(frame, at + 1)
    return message[1]


def message(to: Any, term: Any) -> bytes:
    body = b"p\x83" + encode((2, Atom(""), to)) + b"\x83" + encode(term)
    return struct.pack(">I", len(body)) + body


class Peer:
    """A listening node on 127.0.0.1 running `act` on its one connection."""

    def __init__(self, act: Callable[[socket.socket], None], status: bytes = b"ok") -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.eof = threading.Event()
        self.got: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, args=(act, status), daemon=True)
        self.thread.start()

    def _serve(self, act: Callable[[socket.socket], None], status: bytes) -> None:
        sock, _ = self.listener.accept()
        sock.settimeout(20)
        try:
            node_handshake(sock, status)
            act(sock)
            while True:  # until the client hangs up
                chunk = sock.recv(65536)
                if not chunk:
                    break
                self.got.append(chunk)
            self.eof.set()
        except (OSError, EOFError):
            self.eof.set()
        finally:
            sock.close()
            self.listener.close()


def bounded_call(conn: NodeConnection, timeout: float) -> tuple[BaseException | None, float]:
    """The call's error and how long it took, the call run in a thread that
    must end within 10 s (a call the deadline does not end fails the test
    instead of hanging it)."""
    out: list[BaseException | None] = [None]

    def run() -> None:
        try:
            conn.call("erlang", "node", [], timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 (what the test looks at)
            out[0] = exc

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the call outlived its deadline"
    return out[0], time.monotonic() - started


def test_a_frame_past_max_frame_is_refused() -> None:
    # Past 1 MiB: real answers are a few KB.
    peer = Peer(lambda s: (read_request(s), s.sendall(struct.pack(">I", (1 << 20) + 1))))
    with NodeConnection("127.0.0.1", peer.port, COOKIE) as conn:
        error, _took = bounded_call(conn, 5)
    assert isinstance(error, ErlDistError) and "bytes" in str(error)


def test_endless_ticks_end_at_the_deadline() -> None:
    def ticks(sock: socket.socket) -> None:
        read_request(sock)
        while True:
            sock.sendall(b"\0\0\0\0")
            time.sleep(0.01)
    peer = Peer(ticks)
    with NodeConnection("127.0.0.1", peer.port, COOKIE) as conn:
        error, took = bounded_call(conn, 0.5)
    assert isinstance(error, ErlDistError) and "in time" in str(error)
    assert peer.eof.wait(5)


def test_a_trickled_frame_ends_at_the_deadline() -> None:
    def trickle(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(struct.pack(">I", 1000))
        for _ in range(1000):
            sock.sendall(b"j")
            time.sleep(0.05)
    peer = Peer(trickle)
    with NodeConnection("127.0.0.1", peer.port, COOKIE) as conn:
        error, took = bounded_call(conn, 0.5)
    assert isinstance(error, ErlDistError)


def test_a_silent_node_ends_at_the_deadline_as_erldisterror() -> None:
    peer = Peer(lambda s: read_request(s))
    with NodeConnection("127.0.0.1", peer.port, COOKIE) as conn:
        error, _took = bounded_call(conn, 0.3)
    assert isinstance(error, ErlDistError)


def test_io_requests_of_the_evaluated_code_are_answered() -> None:
    def ask(sock: socket.socket) -> None:
        pid, ref = read_request(sock)
        node_pid = erl_dist.Opaque(88, encode(Atom("app@10.0.0.2")) + bytes(12))
        sock.sendall(message(pid, (Atom("io_request"), node_pid, Atom("reply_as"),
                                   (Atom("put_chars"), Atom("unicode"), b"hello\n"))))
        sock.sendall(message(pid, (Atom("io_request"), node_pid, Atom("reply_as2"),
                                   (Atom("get_line"), Atom("unicode"), "?"))))
        sock.sendall(message(pid, (ref, Atom("done"))))
    peer = Peer(ask)
    with NodeConnection("127.0.0.1", peer.port, COOKIE) as conn:
        assert conn.call("erlang", "node", [], timeout=5) == Atom("done")
    assert peer.eof.wait(5)
    got = b"".join(peer.got)
    assert encode((Atom("io_reply"), Atom("reply_as"), Atom("ok"))) in got
    assert encode((Atom("io_reply"), Atom("reply_as2"), (Atom("error"), Atom("enotsup")))) in got


def test_a_refused_handshake_closes_the_socket() -> None:
    peer = Peer(lambda s: None, status=b"not_allowed")
    with pytest.raises(ErlDistError, match="refused") as info:
        NodeConnection("127.0.0.1", peer.port, COOKIE)
    # The client's socket is closed although the error (and its frames,
    # which hold the connection object) is still alive.
    assert peer.eof.wait(5)
    assert info.value is not None


def test_a_stalled_handshake_ends_at_its_deadline(monkeypatch) -> None:
    monkeypatch.setattr(erl_dist, "HANDSHAKE_SECONDS", 0.5)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        started = time.monotonic()
        with pytest.raises(ErlDistError):
            NodeConnection("127.0.0.1", listener.getsockname()[1], COOKIE)
        assert time.monotonic() - started < 5
    finally:
        listener.close()


# --- hostile term bytes --------------------------------------------------------

FUN_OF_NO_SIZE = bytes([112, 0, 0, 0, 0]) + bytes(20)


@pytest.mark.parametrize("data", [
    pytest.param(bytes([108, 0, 0, 0, 5]) + FUN_OF_NO_SIZE, id="new_fun-size-0-in-a-list"),
    pytest.param(bytes([108, 0xFF, 0xFF, 0xFF, 0xFF, 106, 106]), id="list-count-past-the-bytes"),
    pytest.param(bytes([108, 0, 0, 0, 3, 97, 1, 97]), id="list-cut-short"),
    pytest.param(bytes([104, 3, 97, 1]), id="tuple-cut-short"),
    pytest.param(bytes([105, 0xFF, 0xFF, 0xFF, 0xFF, 106]), id="large-tuple-count"),
    pytest.param(bytes([110, 8, 0, 1, 2]), id="small-big-cut-short"),
    pytest.param(bytes([111, 0x7F, 0xFF, 0xFF, 0xFF, 0, 1]), id="large-big-count"),
    pytest.param(bytes([109, 0, 0, 1, 0]) + b"x", id="binary-cut-short"),
    pytest.param(bytes([107, 0, 50]) + b"x", id="string-cut-short"),
    pytest.param(bytes([116, 0xFF, 0xFF, 0xFF, 0xFF, 106, 106]), id="map-count"),
    pytest.param(bytes([90, 0xFF, 0xFF, 119, 1]) + b"a", id="reference-word-count"),
    pytest.param(bytes([104, 1]) * 100_000 + bytes([106]), id="deep-nesting"),
    pytest.param(bytes([108, 0, 0x10, 0, 0]) + bytes([106]) * (1 << 20), id="a-million-terms"),
    pytest.param(bytes([98, 0, 0]), id="integer-cut-short"),
    pytest.param(bytes([88, 97, 1]) + bytes(12), id="pid-of-no-node"),
])
def test_hostile_terms_are_errors(data: bytes) -> None:
    with pytest.raises(ErlDistError):
        decode(data)
