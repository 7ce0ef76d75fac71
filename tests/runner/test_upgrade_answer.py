"""The OTP hot upgrade's answer (runner/hot_upgrade.py otp_answer and
replica_results): the conductor's node is the app's, so its answer may be
anything; whatever it is, every replica gets a status and short lines
(anything not understood is the upgrade not completing: status 1, a
restart deploy), never an exception."""
from __future__ import annotations

from typing import Any

import pytest

from runner.containers import MAX_LINE, Replica
from runner.erl_dist import Atom, Opaque
from runner.hot_upgrade import otp_answer, replica_results

REPLICAS = [Replica(id=f"{n}" * 12, name=f"app-web-{n}", app="app", version=1, process_type="web",
                    state="running", host_port=None, created=float(n)) for n in (1, 2)]


def results(answer: Any) -> list[tuple[int, list[str]]]:
    code, said = otp_answer(answer)
    return replica_results(code, said, REPLICAS, 0.0, 1.0)


def test_a_good_answer_gives_each_replica_its_own_outcome() -> None:
    text = "app-web-1|0|upgraded;app-web-2|3|refused;timing|1|2|3|4"
    got = results((Atom("ok"), text))
    assert [code for code, _ in got] == [0, 3]
    assert got[0][1][-1] == "upgraded" and got[1][1] == ["refused"]
    # A string past the short form (or with characters past 255) is a list.
    assert results((Atom("ok"), [ord(c) for c in text])) == got


@pytest.mark.parametrize("answer", [
    pytest.param((Atom("ok"), [2 ** 70, 65]), id="a-character-past-unicode"),
    pytest.param((Atom("ok"), [-1]), id="a-negative-character"),
    pytest.param((Atom("ok"), "app-web-1|" + "9" * 5000 + "|x"), id="a-code-of-5000-digits"),
    pytest.param((Atom("ok"), "timing|" + "9" * 5000 + "|1|2|3"), id="a-timing-of-5000-digits"),
    pytest.param((Atom("ok"), "conductor|1;sent|" + "9" * 5000), id="sent-of-5000-digits"),
    pytest.param([Atom("x")] * 200_000, id="a-huge-list"),
    pytest.param((Atom("ok"), {Atom("a"): [Opaque(112, b"")] * 1000}), id="a-map"),
    pytest.param((Atom("badrpc"), ("EXIT", "x" * 1_000_000)), id="a-huge-badrpc"),
    pytest.param(None, id="nothing"),
    pytest.param((Atom("ok"), ("x" * 100_000 + ";") * 50), id="long-lines"),
])
def test_a_garbage_answer_is_the_upgrade_not_completing(answer: Any) -> None:
    got = results(answer)
    assert len(got) == 2
    for code, lines in got:
        assert code != 0
        assert lines and all(len(line) <= MAX_LINE for line in lines)
