"""A minimal Erlang distribution client: Shipway calls a function in a
replica's running node (rpc through its `rex` server) over the node's fixed
distribution port, as a hidden node with the app's cookie. Why: a hot
upgrade's `docker exec` + bash + erl_call cost 0.1-0.4 s of a busy host's
CPU per call before the node heard anything; a TCP connection and this
handshake cost a few ms. Only what that needs: the version 6 handshake
(OTP 23+), pass-through messages without atom cache, and the external term
format for the terms exchanged (atoms, integers, strings, binaries, lists,
tuples, pids, references; maps, floats and funs in answers).

The node is the app's (its owner runs what he likes in it), and this runs
in the shared server under the app's lock: whatever it sends must neither
crash, exhaust nor hold the server. So a frame is at most MAX_FRAME bytes,
its decoding at most MAX_TERMS terms MAX_DEPTH deep and every length read
checked against the bytes there are, and a call and the handshake each
have one absolute deadline that no trickle of bytes or ticks extends."""
from __future__ import annotations

import hashlib
import os
import socket
import struct
import time
from typing import Any

# Capabilities (not published: hidden): what OTP 25 requires of a peer,
# plus UNLINK_ID and V4_NC, which OTP 26+ requires too (we never link, and
# the decoder reads V4 ports and 5-word references).
_FLAGS = (0x4 | 0x10 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x20000 | 0x40000
          | 0x1000000 | 0x2000000 | (1 << 34))
_HANDSHAKE_23 = 0x1000000
# A frame from the node: the upgrade's answer is a few KB (a line per
# replica), rex's for file:write_file an atom.
MAX_FRAME = 1 << 20
MAX_TERMS = 100_000
MAX_DEPTH = 64
MAX_BIG_BYTES = 1024  # an integer past 8192 bits is none of Shipway's
HANDSHAKE_SECONDS = 10.0


class Atom(str):
    """An Erlang atom (a plain str is an Erlang string: a list of chars)."""


class ErlDistError(Exception):
    """The node could not be reached, refused us, did not answer in time,
    or answered nonsense (also every socket error of a call)."""


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
        raw = abs(term).to_bytes((abs(term).bit_length() + 7) // 8, "little")
        if len(raw) > 255:
            raise ValueError("integer out of range")
        return b"n" + bytes([len(raw), term < 0]) + raw  # SMALL_BIG
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


def decode(data: bytes, at: int = 0, max_terms: int = MAX_TERMS) -> tuple[Any, int]:
    """(term, the offset after it) of the term body at `at`; ErlDistError
    for a term cut short, not understood, or past MAX_TERMS / MAX_DEPTH."""
    return _Decoder(data, max_terms).term(at, 0)


class _Decoder:
    """One term's decoding: its bytes and the terms it may still make."""

    def __init__(self, data: bytes, max_terms: int) -> None:
        self.data, self.left = data, max_terms

    def need(self, at: int, n: int) -> None:
        if n < 0 or at + n > len(self.data):
            raise ErlDistError("a term cut short")

    def count(self, at: int, size: int, per_item: int = 1) -> tuple[int, int]:
        """(a count of `size` bytes at `at`, the offset after it); each
        item takes at least `per_item` bytes, which must be there."""
        self.need(at, size)
        n = int.from_bytes(self.data[at:at + size], "big")
        at += size
        if n * per_item > len(self.data) - at:
            raise ErlDistError("a term longer than its message")
        return n, at

    def term(self, at: int, depth: int) -> tuple[Any, int]:
        self.left -= 1
        if self.left < 0 or depth > MAX_DEPTH:
            raise ErlDistError("a term too large or too deep")
        data = self.data
        self.need(at, 1)
        tag = data[at]
        at += 1
        if tag == 97:  # SMALL_INTEGER
            self.need(at, 1)
            return data[at], at + 1
        if tag == 98:  # INTEGER
            self.need(at, 4)
            return struct.unpack_from(">i", data, at)[0], at + 4
        if tag in (110, 111):  # SMALL_BIG, LARGE_BIG
            n, at = self.count(at, 1 if tag == 110 else 4)
            if n > MAX_BIG_BYTES:
                raise ErlDistError("an integer too large")
            self.need(at, 1 + n)
            value = int.from_bytes(data[at + 1:at + 1 + n], "little")
            return (-value if data[at] else value), at + 1 + n
        if tag == 70:  # NEW_FLOAT
            self.need(at, 8)
            return struct.unpack_from(">d", data, at)[0], at + 8
        if tag in (100, 118, 115, 119):  # ATOM, ATOM_UTF8, SMALL_ATOM, SMALL_ATOM_UTF8
            n, at = self.count(at, 2 if tag in (100, 118) else 1)
            return Atom(data[at:at + n].decode("utf-8", "replace")), at + n
        if tag in (104, 105):  # SMALL_TUPLE, LARGE_TUPLE
            n, at = self.count(at, 1 if tag == 104 else 4)
            items = []
            for _ in range(n):
                item, at = self.term(at, depth + 1)
                items.append(item)
            return tuple(items), at
        if tag == 106:  # NIL
            return [], at
        if tag == 107:  # STRING (a list of bytes)
            n, at = self.count(at, 2)
            return data[at:at + n].decode("latin-1"), at + n
        if tag == 108:  # LIST
            n, at = self.count(at, 4)
            items = []
            for _ in range(n):
                item, at = self.term(at, depth + 1)
                items.append(item)
            tail, at = self.term(at, depth + 1)
            return (items if tail == [] else (items, tail)), at
        if tag in (109, 77):  # BINARY, BIT_BINARY (its last byte's bits dropped)
            n, at = self.count(at, 4)
            at += tag == 77
            self.need(at, n)
            return bytes(data[at:at + n]), at + n
        if tag == 116:  # MAP
            n, at = self.count(at, 4, 2)
            out = {}
            for _ in range(n):
                key, at = self.term(at, depth + 1)
                value, at = self.term(at, depth + 1)
                try:
                    out[key] = value
                except TypeError:  # a key Python cannot hash (a list): left out
                    pass
            return out, at
        start = at - 1
        if tag in (88, 103, 89, 102, 120):  # NEW_PID, PID, NEW_PORT, PORT, V4_PORT
            at = self.node(at, depth)
            at += {88: 12, 103: 9, 89: 8, 102: 5, 120: 12}[tag]
        elif tag in (90, 114):  # NEWER_REFERENCE, NEW_REFERENCE
            n, at = self.count(at, 2, 4)
            at = self.node(at, depth) + (4 if tag == 90 else 1) + 4 * n
        elif tag == 112:  # NEW_FUN: its size counts itself, not the tag
            self.need(at, 4)
            n = struct.unpack_from(">I", data, at)[0]
            if n < 5:
                raise ErlDistError("a fun of no size")
            at += n
        elif tag == 113:  # EXPORT
            for _ in range(3):
                _part, at = self.term(at, depth + 1)
        else:
            raise ErlDistError(f"term tag {tag} not understood")
        self.need(start, at - start)
        return Opaque(tag, bytes(data[start + 1:at])), at

    def node(self, at: int, depth: int) -> int:
        """The offset after the node name (an atom) at `at`."""
        name, at = self.term(at, depth + 1)
        if not isinstance(name, Atom):
            raise ErlDistError("a pid, port or reference of no node")
        return at


# --- the connection -----------------------------------------------------------

class NodeConnection:
    """One hidden connection to a node, for rpc calls in turn."""

    def __init__(self, address: str, port: int, cookie: str, timeout: float = 120) -> None:
        """`timeout`: a call's time by default (its whole time, not a
        pause between bytes); the handshake has HANDSHAKE_SECONDS."""
        self.cookie = cookie.encode()
        self.timeout = timeout
        self.creation = int.from_bytes(os.urandom(4), "big") or 1
        self.name = Atom(f"shipway_{os.getpid()}_{os.urandom(4).hex()}@127.0.0.1")
        self._serial = 0
        try:
            self.sock = socket.create_connection((address, port), timeout=5)
        except OSError as exc:
            raise ErlDistError(f"{address}:{port} not reached: {exc}") from exc
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._handshake(time.monotonic() + HANDSHAKE_SECONDS)
        except BaseException as exc:
            self.close()
            if isinstance(exc, ErlDistError) or not isinstance(exc, Exception):
                raise
            raise ErlDistError(f"handshake with {address}:{port} failed: {exc!r}") from exc
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

    def _left(self, deadline: float) -> None:
        """The socket's timeout set to what is left until `deadline`."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise ErlDistError("the node did not answer in time")
        self.sock.settimeout(max(0.01, left))

    def _send(self, data: bytes, deadline: float) -> None:
        self._left(deadline)  # sendall's timeout is for all of it
        self.sock.sendall(data)

    def _read(self, n: int, deadline: float) -> bytes:
        out = bytearray()
        while len(out) < n:
            self._left(deadline)
            chunk = self.sock.recv(min(n - len(out), 1 << 20))
            if not chunk:
                raise ErlDistError("the node closed the connection")
            out += chunk
        return bytes(out)

    def _send_hs(self, body: bytes, deadline: float) -> None:
        self._send(struct.pack(">H", len(body)) + body, deadline)

    def _recv_hs(self, deadline: float) -> bytes:
        return self._read(struct.unpack(">H", self._read(2, deadline))[0], deadline)

    def _digest(self, challenge: int) -> bytes:
        return hashlib.md5(self.cookie + str(challenge).encode()).digest()

    def _handshake(self, deadline: float) -> None:
        name = self.name.encode()
        self._send_hs(b"N" + struct.pack(">QIH", _FLAGS, self.creation, len(name)) + name, deadline)
        status = self._recv_hs(deadline)
        if status[:1] != b"s" or status[1:] not in (b"ok", b"ok_simultaneous"):
            raise ErlDistError(f"the node refused us: {status[1:40]!r}")
        challenge = self._recv_hs(deadline)
        if challenge[:1] != b"N" or len(challenge) < 13:
            raise ErlDistError("the node does not speak the OTP 23+ handshake")
        flags, theirs = struct.unpack_from(">QI", challenge, 1)
        if not flags & _HANDSHAKE_23:
            raise ErlDistError("the node does not speak the OTP 23+ handshake")
        ours = int.from_bytes(os.urandom(4), "big")
        self._send_hs(b"r" + struct.pack(">I", ours) + self._digest(theirs), deadline)
        try:
            ack = self._recv_hs(deadline)
        except ErlDistError as exc:  # it hangs up on a wrong digest
            raise ErlDistError(f"the node refused the cookie ({exc})") from None
        if ack[:1] != b"a" or ack[1:17] != self._digest(ours):
            raise ErlDistError("the node's cookie is not the app's")

    def _frame(self, deadline: float) -> bytes:
        """The next message's bytes; ticks are answered, and end at the
        deadline like anything else."""
        while True:
            n = struct.unpack(">I", self._read(4, deadline))[0]
            if n > MAX_FRAME:  # the node is the app's: its answers are bounded
                raise ErlDistError(f"a message of {n} bytes from the node")
            if n:
                return self._read(n, deadline)
            self._send(b"\0\0\0\0", deadline)  # a tick: answered with one

    def call(self, module: str, function: str, args: list[Any], timeout: float | None = None) -> Any:
        """module:function(args...) in the node (rex, as erl_call does):
        its value, or ("badrpc", Reason). Within `timeout` seconds (the
        connection's by default) from now, or ErlDistError (and the
        connection closed)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            return self._call(module, function, args, deadline)
        except BaseException as exc:
            self.close()  # what is left of the stream is in no known state
            if isinstance(exc, TimeoutError):  # socket.timeout: its recv or send ran out of it
                raise ErlDistError(f"{module}:{function}: the node did not answer in time") from exc
            if isinstance(exc, (OSError, struct.error)):
                raise ErlDistError(f"{module}:{function}: {exc!r}") from exc
            raise

    def _call(self, module: str, function: str, args: list[Any], deadline: float) -> Any:
        self._serial += 1
        ref = Opaque(90, struct.pack(">H", 3) + encode(self.name) + struct.pack(">I", self.creation)
                     + struct.pack(">III", self._serial, *struct.unpack(">II", os.urandom(8))))
        control = (6, self.pid, Atom(""), Atom("rex"))
        message = (Atom("$gen_call"), (self.pid, ref),
                   (Atom("call"), Atom(module), Atom(function), args, self.pid))
        body = b"p" + b"\x83" + encode(control) + b"\x83" + encode(message)
        self._send(struct.pack(">I", len(body)) + body, deadline)
        while True:
            frame = self._frame(deadline)
            if frame[:2] != b"p\x83":
                continue
            control, at = decode(frame, 2)
            if at >= len(frame) or frame[at] != 131:
                continue
            answer, _ = decode(frame, at + 1)
            if not (isinstance(answer, tuple) and answer):
                continue
            if len(answer) == 2 and isinstance(answer[0], Opaque) and answer[0].data == ref.data:
                return answer[1]
            if answer[0] == "io_request" and len(answer) == 4:
                self._io_reply(answer, deadline)

    def _io_reply(self, request: tuple, deadline: float) -> None:
        """The call's group leader is us (as with erl_call): output the
        evaluated code prints (a code_change/3 logging with IO.puts) is
        acknowledged and dropped, so that it neither blocks nor fails the
        upgrade; input and options are not supported ({error, enotsup},
        what a group leader says of what it cannot do)."""
        _tag, sender, reply_as, what = request
        if not isinstance(sender, Opaque) or sender.tag not in (88, 103):
            return
        parts = what[1] if isinstance(what, tuple) and what[:1] == ("requests",) else [what]
        output = isinstance(parts, list) and all(
            isinstance(p, tuple) and p[:1] == ("put_chars",) for p in parts)
        reply = (Atom("io_reply"), reply_as, Atom("ok") if output else (Atom("error"), Atom("enotsup")))
        try:
            body = b"p\x83" + encode((2, Atom(""), sender)) + b"\x83" + encode(reply)
        except (TypeError, ValueError):  # a ReplyAs that cannot go back as it came
            return
        self._send(struct.pack(">I", len(body)) + body, deadline)
