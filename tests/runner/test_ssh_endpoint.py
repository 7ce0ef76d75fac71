"""Which replica `ps:ssh` reaches. The Docker list is given here (no engine):
a replica started before replicas carried the app's host key cannot be made
by Docker today, so it is stated, as the list would show it after an upgrade."""
from __future__ import annotations

from pathlib import Path

import pytest

from runner.containers import HOST_KEY_VAR, Replica
from runner.docker_runner import DockerRunner
from runner.interface import ReleaseSpec
from core.settings import load_settings


class _Listed:
    def __init__(self, replicas: list[Replica], files: dict[tuple[str, str], str] | None = None
                 ) -> None:
        self.replicas = replicas
        self.files = files or {}

    def list(self, app: str | None = None) -> list[Replica]:
        return [r for r in self.replicas if app is None or r.app == app]

    def read_file(self, container_id: str, path: str) -> str | None:
        return self.files.get((container_id, path))


def _replica(id: str, created: float, host_key: bool, ptype: str = "web") -> Replica:
    return Replica(id=id, name=f"r-{id}", app="demo", version=3, process_type=ptype,
                   state="running", host_port=40000, created=created,
                   ssh_port=50000 + int(created), app_host_key=host_key)


KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nthe app's\n-----END OPENSSH PRIVATE KEY-----\n"


def _runner(tmp_path: Path, replicas: list[Replica],
            files: dict[tuple[str, str], str] | None = None) -> DockerRunner:
    settings, _ = load_settings(overrides={"data_dir": str(tmp_path)}, environ={})
    runner = DockerRunner(settings, slugs=None, router=None, state=None,
                          containers=_Listed(replicas, files))  # type: ignore[arg-type]
    runner._desired["demo"] = ReleaseSpec(app="demo", version=3, slug_key="demo/x.tar.gz",
                                          process_types={"web": "serve"},
                                          env={HOST_KEY_VAR: KEY}, formation={"web": 2})
    return runner


def test_the_default_replica_is_one_with_the_apps_host_key(tmp_path: Path) -> None:
    runner = _runner(tmp_path, [_replica("aaaa1111", 1, host_key=False),
                                _replica("bbbb2222", 2, host_key=True)])
    assert runner.ssh_endpoint("demo", None) == ("127.0.0.1", 50002)


def test_a_replica_without_the_host_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    runner = _runner(tmp_path, [_replica("aaaa1111", 1, host_key=False),
                                _replica("bbbb2222", 2, host_key=True)])
    with pytest.raises(LookupError, match=r"ps:restart -a demo"):
        runner.ssh_endpoint("demo", "aaaa")
    assert runner.ssh_endpoint("demo", "bbbb") == ("127.0.0.1", 50002)
    only_old = _runner(tmp_path, [_replica("aaaa1111", 1, host_key=False)])
    with pytest.raises(LookupError, match=r"started before replicas carried"):
        only_old.ssh_endpoint("demo", None)


def test_an_unlabelled_replica_holding_the_apps_key_is_reached(tmp_path: Path) -> None:
    """Started by a Shipway that handed out host keys but did not label them."""
    held = {("aaaa1111", "/shipway/ssh/host_ed25519_key"): KEY}
    runner = _runner(tmp_path, [_replica("aaaa1111", 1, host_key=False)], held)
    assert runner.ssh_endpoint("demo", "aaaa") == ("127.0.0.1", 50001)
    other = {("aaaa1111", "/shipway/ssh/host_ed25519_key"): "another key\n"}
    with pytest.raises(LookupError, match="ps:restart"):
        _runner(tmp_path, [_replica("aaaa1111", 1, host_key=False)], other).ssh_endpoint(
            "demo", "aaaa")
