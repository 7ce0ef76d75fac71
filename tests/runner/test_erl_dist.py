"""The external term format of runner/erl_dist.py: what Shipway sends a
node (atoms, integers, strings, binaries, lists, tuples) decodes back to
the same, and the forms a node answers with decode (the bytes below are
what OTP 25's term_to_binary gives)."""
from __future__ import annotations

import pytest

from runner.erl_dist import Atom, ErlDistError, Opaque, decode, encode


@pytest.mark.parametrize("term", [
    Atom("ok"), Atom(""), Atom("é"), 0, 255, 256, -1, 2**31 - 1, -(2**31), "hello", b"", b"\0\xff" * 70000,
    [], [1, Atom("a"), "x"], (), (Atom("call"), Atom("file"), Atom("script"), ["/p", [(Atom("V"), "0.2.0")]]),
    tuple(range(300)), [b"bin"] * 3,
])
def test_what_shipway_sends_decodes_back(term) -> None:
    data = encode(term)
    back, end = decode(data)
    assert end == len(data)
    assert back == term and type(back) is type(term)


def test_the_empty_string_is_the_empty_list() -> None:
    assert encode("") == encode([]) == b"j"


def test_answers_of_a_node_decode() -> None:
    # term_to_binary({ok, #{a => 1.5}, 123456789012, [1 | 2]}) without the 131
    data = bytes([104, 4, 119, 2]) + b"ok" + bytes([116, 0, 0, 0, 1, 119, 1]) + b"a" \
        + bytes([70]) + bytes.fromhex("3ff8000000000000") \
        + bytes([110, 5, 0]) + (123456789012).to_bytes(5, "little") \
        + bytes([108, 0, 0, 0, 1, 97, 1, 97, 2])
    term, end = decode(data)
    assert end == len(data)
    assert term == (Atom("ok"), {Atom("a"): 1.5}, 123456789012, ([1], 2))
    # A pid: kept opaque, with its exact bytes (to be sent back as it is).
    pid = bytes([88, 119, 5]) + b"a@b.c" + bytes(12)
    opaque, end = decode(pid)
    assert isinstance(opaque, Opaque) and end == len(pid) and encode(opaque) == pid


def test_a_term_it_does_not_know_is_an_error() -> None:
    with pytest.raises(ErlDistError):
        decode(bytes([200, 1, 2]))
    with pytest.raises(TypeError):
        encode(1.5)
