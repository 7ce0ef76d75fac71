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


# term_to_binary([fun() -> X end, 7]) in OTP 25's erl (X bound: a fun of
# erl_eval with its environment): NEW_FUN's size counts itself but not the
# tag, so the 7 after it is read as 7.
A_FUN_AND_7 = bytes.fromhex(
    "836C00000002700000009A00065361AA461590D1BDF1EB62D1A6EB080000002B0000000164000865726C5F6576616C61"
    "2B6200329B0D5864000D6E6F6E6F6465406E6F686F7374000000090000000000000000680661016C0000000168026400"
    "015861056A6400046E6F6E656400046E6F6E6574000000006C000000016805640006636C6175736561016A6A6C000000"
    "0168036400037661726101640001586A6A61076A")


def test_a_fun_is_skipped_by_its_size() -> None:
    term, end = decode(A_FUN_AND_7, 1)
    assert end == len(A_FUN_AND_7)
    assert isinstance(term[0], Opaque) and term[0].tag == 112 and term[1] == 7
