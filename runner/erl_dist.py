"""A minimal Erlang distribution client: Shipway calls a function in a
replica's running node (rpc through its `rex` server) over the node's fixed
distribution port, as a hidden node with the app's cookie. Why: a hot
upgrade's `docker exec` + bash + erl_call cost 0.1-0.4 s of a busy host's
CPU per call before the node heard anything; a TCP connection and this
handshake cost a few ms. Only what that needs: the version 6 handshake
(OTP 23+), pass-through messages without atom cache, and the external term
format for the terms exchanged (atoms, integers, strings, binaries, lists,
tuples, pids, references; maps, floats and funs in answers)."""
from __future__ import annotations

import hashlib
import os
import socket
import struct
import time
from typing import Any

# Capabilities: what OTP 25 requires of a peer, not published (hidden).
_FLAGS = (0x4 | 0x10 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x20000 | 0x40000
          | 0x1000000)
_HANDSHAKE_23 = 0x1000000
MAX_FRAME = 16 << 20


class Atom(str):
    """An Erlang atom (a plain str is an Erlang string: a list of chars)."""


class ErlDistError(Exception):
    """The node could not be reached, refused us, or answered nonsense."""


class Opaque:
    """A term of the answer Shipway has no use for (pid, ref, fun, port)."""

    def __init__(self, tag: int, data: bytes) -> None:
        self.tag, self.data = tag, data

    def __repr__(self) -> str:
        return f"<term {self.tag}>"


# --- the external term format ---------------------------------------------

def encode(term: Any) -> bytes:
    """A term's body (without the version byte)."""
    if isinstance(term, Atom):
        raw = term.encode("utf-8")
        return (b"w" + bytes([len(raw)]) if len(raw) < 256 else b"v" + struct.pack(">H", len(raw))) + raw
    if isinstance(term, bool):
        return encode(Atom("true" if term else "false"))
    if isinstance(term, int):
        if 0 <= term < 256:
            return b"a" + bytes([term])
        if -(1 << 31) <= term < (1 << 31):
            return b"b" + struct.pack(">i", term)
        raise ValueError("integer out of range")
    if isinstance(term, str):
        raw = term.encode("latin-1")
        if not raw:
            return b"j"
        if len(raw) < 65536:
            return b"k" + struct.pack(">H", len(raw)) + raw
        return encode(list(raw))
    if isinstance(term, (bytes, bytearray)):
        return b"m" + struct.pack(">I", len(term)) + bytes(term)
    if isinstance(term, tuple):
        head = b"h" + bytes([len(term)]) if len(term) < 256 else b"i" + struct.pack(">I", len(term))
        return head + b"".join(encode(t) for t in term)
    if isinstance(term, list):
        if not term:
            return b"j"
        return b"l" + struct.pack(">I", len(term)) + b"".join(encode(t) for t in term) + b"j"
    if isinstance(term, Opaque):
        return bytes([term.tag]) + term.data
    raise TypeError(f"cannot encode {type(term).__name__}")


def decode(data: bytes, at: int = 0) -> tuple[Any, int]:
    """(term, the offset after it) of the term body at `at`."""
    tag = data[at]
    at += 1
    if tag == 97:  # SMALL_INTEGER
        return data[at], at + 1
    if tag == 98:  # INTEGER
        return struct.unpack_from(">i", data, at)[0], at + 4
    if tag in (110, 111):  # SMALL_BIG, LARGE_BIG
        if tag == 110:
            n, at = data[at], at + 1
        else:
            n, at = struct.unpack_from(">I", data, at)[0], at + 4
        sign, at = data[at], at + 1
        value = int.from_bytes(data[at:at + n], "little")
        return (-value if sign else value), at + n
    if tag == 70:  # NEW_FLOAT
        return struct.unpack_from(">d", data, at)[0], at + 8
    if tag in (100, 118):  # ATOM, ATOM_UTF8
        n = struct.unpack_from(">H", data, at)[0]
        return Atom(data[at + 2:at + 2 + n].decode("utf-8", "replace")), at + 2 + n
    if tag in (115, 119):  # SMALL_ATOM, SMALL_ATOM_UTF8
        n = data[at]
        return Atom(data[at + 1:at + 1 + n].decode("utf-8", "replace")), at + 1 + n
    if tag in (104, 105):  # SMALL_TUPLE, LARGE_TUPLE
        if tag == 104:
            n, at = data[at], at + 1
        else:
            n, at = struct.unpack_from(">I", data, at)[0], at + 4
        items = []
        for _ in range(n):
            item, at = decode(data, at)
            items.append(item)
        return tuple(items), at
    if tag == 106:  # NIL
        return [], at
    if tag == 107:  # STRING (a list of bytes)
        n = struct.unpack_from(">H", data, at)[0]
        return data[at + 2:at + 2 + n].decode("latin-1"), at + 2 + n
    if tag == 108:  # LIST
        n, at = struct.unpack_from(">I", data, at)[0], at + 4
        items = []
        for _ in range(n):
            item, at = decode(data, at)
            items.append(item)
        tail, at = decode(data, at)
        return (items if tail == [] else (items, tail)), at
    if tag == 109:  # BINARY
        n = struct.unpack_from(">I", data, at)[0]
        return bytes(data[at + 4:at + 4 + n]), at + 4 + n
    if tag == 77:  # BIT_BINARY
        n = struct.unpack_from(">I", data, at)[0]
        return bytes(data[at + 5:at + 5 + n]), at + 5 + n
    if tag == 116:  # MAP
        n, at = struct.unpack_from(">I", data, at)[0], at + 4
        pairs = []
        for _ in range(n):
            key, at = decode(data, at)
            value, at = decode(data, at)
            pairs.append((key, value))
        return dict((k, v) for k, v in pairs if isinstance(k, (str, int, bytes, tuple))), at
    start = at
    if tag in (88, 103, 89, 102, 120):  # NEW_PID, PID, NEW_PORT, PORT, V4_PORT
        _node, at = decode(data, at)
        at += {88: 12, 103: 9, 89: 8, 102: 5, 120: 12}[tag]
        return Opaque(tag, bytes(data[start:at])), at
    if tag in (90, 114):  # NEWER_REFERENCE, NEW_REFERENCE
        n = struct.unpack_from(">H", data, at)[0]
        _node, after = decode(data, at + 2)
        at = after + (4 if tag == 90 else 1) + 4 * n
        return Opaque(tag, bytes(data[start:at])), at
    if tag == 112:  # NEW_FUN: its size includes itself
        n = struct.unpack_from(">I", data, at)[0]
        return Opaque(tag, bytes(data[start:start + n - 1])), start + n - 1
    if tag == 113:  # EXPORT
        for _ in range(3):
            _part, at = decode(data, at)
        return Opaque(tag, bytes(data[start:at])), at
    raise ErlDistError(f"term tag {tag} not understood")


# --- the connection -----------------------------------------------------------

class NodeConnection:
    """One hidden connection to a node, for rpc calls in turn."""

    def __init__(self, address: str, port: int, cookie: str, timeout: float = 120) -> None:
        self.cookie = cookie.encode()
        self.creation = int.from_bytes(os.urandom(4), "big") or 1
        self.name = Atom(f"shipway_{os.getpid()}_{os.urandom(4).hex()}@127.0.0.1")
        self.sock = socket.create_connection((address, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._serial = 0
        try:
            self._handshake()
        except (OSError, struct.error, IndexError) as exc:
            self.close()
            raise ErlDistError(f"handshake with {address}:{port} failed: {exc}") from exc
        self.sock.settimeout(timeout)
        self.pid = Opaque(88, encode(self.name) + struct.pack(">III", 1, 0, self.creation))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "NodeConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(min(n - len(out), 1 << 20))
            if not chunk:
                raise ErlDistError("the node closed the connection")
            out += chunk
        return bytes(out)

    def _send_hs(self, body: bytes) -> None:
        self.sock.sendall(struct.pack(">H", len(body)) + body)

    def _recv_hs(self) -> bytes:
        return self._read(struct.unpack(">H", self._read(2))[0])

    def _digest(self, challenge: int) -> bytes:
        return hashlib.md5(self.cookie + str(challenge).encode()).digest()

    def _handshake(self) -> None:
        name = self.name.encode()
        self._send_hs(b"N" + struct.pack(">QIH", _FLAGS, self.creation, len(name)) + name)
        status = self._recv_hs()
        if status[:1] != b"s" or status[1:] not in (b"ok", b"ok_simultaneous"):
            raise ErlDistError(f"the node refused us: {status[1:]!r}")
        challenge = self._recv_hs()
        if challenge[:1] != b"N":
            raise ErlDistError("the node does not speak the OTP 23+ handshake")
        flags, theirs = struct.unpack_from(">QI", challenge, 1)
        if not flags & _HANDSHAKE_23:
            raise ErlDistError("the node does not speak the OTP 23+ handshake")
        ours = int.from_bytes(os.urandom(4), "big")
        self._send_hs(b"r" + struct.pack(">I", ours) + self._digest(theirs))
        try:
            ack = self._recv_hs()
        except ErlDistError:  # it hangs up on a wrong digest
            raise ErlDistError("the node refused the cookie") from None
        if ack[:1] != b"a" or ack[1:17] != self._digest(ours):
            raise ErlDistError("the node's cookie is not the app's")

    def _frame(self) -> bytes:
        while True:
            n = struct.unpack(">I", self._read(4))[0]
            if n > MAX_FRAME:  # the node is the app's: its answers are bounded
                raise ErlDistError(f"a message of {n} bytes from the node")
            if n == 0:  # a tick: answered with one
                self.sock.sendall(b"\0\0\0\0")
                continue
            return self._read(n)

    def call(self, module: str, function: str, args: list[Any]) -> Any:
        """module:function(args...) in the node (rex, as erl_call does):
        its value, or ("badrpc", Reason)."""
        self._serial += 1
        ref = Opaque(90, struct.pack(">H", 3) + encode(self.name) + struct.pack(">I", self.creation)
                     + struct.pack(">III", self._serial, *struct.unpack(">II", os.urandom(8))))
        control = (6, self.pid, Atom(""), Atom("rex"))
        message = (Atom("$gen_call"), (self.pid, ref),
                   (Atom("call"), Atom(module), Atom(function), args, self.pid))
        body = b"p" + b"\x83" + encode(control) + b"\x83" + encode(message)
        self.sock.sendall(struct.pack(">I", len(body)) + body)
        deadline = time.monotonic() + (self.sock.gettimeout() or 120)
        while True:
            if time.monotonic() > deadline:
                raise ErlDistError(f"no answer to {module}:{function} in time")
            frame = self._frame()
            if frame[:1] != b"p" or frame[1:2] != b"\x83":
                continue
            control, at = decode(frame, 2)
            if at >= len(frame) or frame[at] != 131:
                continue
            answer, _ = decode(frame, at + 1)
            if isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], Opaque) \
                    and answer[0].data == ref.data:
                return answer[1]
            # an io request from the call's group leader (us): ignored
