"""The hot upgrade's artefact is read from the slug's head on the host
(runner/hot_upgrade.py): only when it is the slug's first member, so that
a replica never waits for a whole slug to be inflated."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

from runner.hot_upgrade import UPGRADE_ARTEFACT, UpgradePlan, upgrade_artefact, upgrade_plan


def _slug(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_artefact_at_the_slug_head_is_read(tmp_path: Path) -> None:
    slug = _slug(tmp_path / "s.tar.gz", [(UPGRADE_ARTEFACT, b"inner tar"), ("Procfile", b"web: x\n")])
    assert upgrade_artefact(slug) == b"inner tar"


def test_no_artefact_unless_it_comes_first(tmp_path: Path) -> None:
    later = _slug(tmp_path / "later.tar.gz", [("Procfile", b"web: x\n"), (UPGRADE_ARTEFACT, b"inner")])
    assert upgrade_artefact(later) is None
    assert upgrade_artefact(_slug(tmp_path / "empty.tar.gz", [])) is None
    (tmp_path / "bad.tar.gz").write_bytes(b"not a slug")
    assert upgrade_artefact(tmp_path / "bad.tar.gz") is None
    assert upgrade_artefact(tmp_path / "missing.tar.gz") is None


def test_an_artefact_over_the_bound_is_not_read(tmp_path: Path, monkeypatch) -> None:
    """Its size is the push's to claim (a gzip bomb inflates on the host):
    past the bound the replicas fetch the slug instead."""
    import runner.hot_upgrade as hot
    monkeypatch.setattr(hot, "MAX_ARTEFACT_BYTES", 1000)
    big = _slug(tmp_path / "big.tar.gz", [(UPGRADE_ARTEFACT, b"\0" * 1001)])
    assert upgrade_artefact(big) is None
    fits = _slug(tmp_path / "fits.tar.gz", [(UPGRADE_ARTEFACT, b"\0" * 1000)])
    assert upgrade_artefact(fits) == b"\0" * 1000


def _artefact(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


REL = "_build/prod/rel/counter"


def test_a_relup_in_the_artefact_is_an_otp_upgrade_of_that_release() -> None:
    plan = upgrade_plan(_artefact({f"{REL}/bin/counter": b"#!/bin/sh\n",
                                   f"{REL}/releases/start_erl.data": b"13.1.5 0.2.0",
                                   f"{REL}/releases/0.2.0/relup": b"{}.",
                                   f"{REL}/lib/counter-0.2.0/ebin/counter.app": b"{}."}))
    assert plan == UpgradePlan(rel=REL, vsn="0.2.0")


def test_without_a_relup_the_replicas_get_no_artefact() -> None:
    """No version bump (or no artefact at all): the module-reload path,
    in which each replica fetches the slug; the artefact is not sent."""
    assert upgrade_plan(_artefact({f"{REL}/bin/counter": b"#!/bin/sh\n",
                                   f"{REL}/releases/start_erl.data": b"13.1.5 0.1.0\n"})) == UpgradePlan()
    assert upgrade_plan(None) == UpgradePlan()
    assert upgrade_plan(b"not a tar") == UpgradePlan()


def test_the_builds_reason_for_no_relup_is_a_refusal_without_any_exec() -> None:
    plan = upgrade_plan(_artefact({f"{REL}/releases/start_erl.data": b"13.1.5 0.2.0",
                                   f"{REL}/releases/shipway-no-hot-upgrade":
                                       b"not hot-upgradable: ERTS changed (13.1.5 to 99.0)\n"}))
    assert plan.rel is None
    assert plan.refusal == "not hot-upgradable: ERTS changed (13.1.5 to 99.0) (to 0.2.0)"


def test_a_version_that_is_not_plain_is_refused() -> None:
    """It goes into paths and Erlang expressions in the replicas."""
    for vsn in (b'0.2.0"]),halt()', b"../../x", b""):
        plan = upgrade_plan(_artefact({f"{REL}/releases/start_erl.data": b"13.1.5 " + vsn,
                                       f"{REL}/releases/x/relup": b"{}."}))
        assert plan.rel is None and plan.refusal is not None and "not plain" in plan.refusal, vsn
