"""Where the HAProxy router's handover sockets live, and who may reach them
(router/haproxy_process.handover_dir, ensure_handover_dir)."""
from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from router.haproxy_process import RouterError, ensure_handover_dir, handover_dir


def test_workers_of_this_user_keep_their_sockets_in_the_router_dir(tmp_path: Path) -> None:
    short = tmp_path / "r"
    assert handover_dir(str(short), shared_with_workers=False) == f"{short}/run"


def test_the_dir_the_running_configuration_names_is_kept(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server started by a service and a `stop-router` run by hand may see
    other XDG_RUNTIME_DIR/TMPDIR values: both must find the same sockets."""
    router_dir = tmp_path / ("d" * 120)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4321")
    first = handover_dir(str(router_dir), shared_with_workers=False)
    (router_dir / "conf.d").mkdir(parents=True)
    (router_dir / "conf.d" / "00-main.cfg").write_text(
        f"frontend x\n    bind unix@{first}/handover-http.sock accept-proxy mode 600\n")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/9999")
    assert handover_dir(str(router_dir), shared_with_workers=False) == first


def test_a_deep_router_dir_uses_the_users_runtime_dir(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket path longer than 107 bytes cannot be bound."""
    deep = tmp_path / ("d" * 120)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4321")  # only a name: nothing is made
    path = handover_dir(str(deep), shared_with_workers=False)
    assert path.startswith("/run/user/4321/shipway-haproxy-")
    assert len(path + "/handover-https.sock.4194304.tmp") <= 107
    assert path != handover_dir(str(deep) + "x", shared_with_workers=False)  # one per router


@pytest.mark.skipif(os.geteuid() != 0, reason="workers of another user need root")
def test_workers_of_another_user_get_a_dir_only_root_creates_in(tmp_path: Path) -> None:
    path = handover_dir(str(tmp_path / "r"), shared_with_workers=True)
    assert path.startswith("/run/shipway-haproxy-")
    ensure_handover_dir(path, shared_with_workers=True)
    try:
        info = os.lstat(path)
        assert stat.S_IMODE(info.st_mode) == 0o711 and info.st_uid == 0
    finally:
        os.rmdir(path)


def test_a_dir_for_this_users_workers_is_closed_to_others(tmp_path: Path) -> None:
    path = str(tmp_path / "run")
    ensure_handover_dir(path, shared_with_workers=False)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700
    ensure_handover_dir(path, shared_with_workers=False)  # again: kept


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    """Someone who made the name first as a link to a place of theirs."""
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "run")
    with pytest.raises(RouterError, match="not a directory of this user's"):
        ensure_handover_dir(str(tmp_path / "run"), shared_with_workers=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory of another user's")
def test_a_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run"
    path.mkdir()
    path.chmod(0o777)
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(RouterError, match="not a directory of this user's"):
        ensure_handover_dir(str(path), shared_with_workers=True)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o777  # left as it was
