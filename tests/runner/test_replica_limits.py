"""A replica's memory and CPU limits from its app's size (ps:scale --size)
or the server's defaults (the policy alone; tests/e2e/test_replica_size.py
runs it)."""
from __future__ import annotations

import pytest

from controller.errors import BadRequest
from controller.formation import check_size
from runner.containers import replica_limits
from runner.interface import ReleaseSpec
from core.settings import Settings, load_settings

MIB = 1024 * 1024


def _spec(size: float | None) -> ReleaseSpec:
    return ReleaseSpec(app="a", version=1, slug_key="a/x.tgz", process_types={"web": "x"},
                       env={}, formation={"web": 1}, size=size)


def test_no_size_runs_the_servers_defaults() -> None:
    assert replica_limits(Settings(), _spec(None), host_cpus=2) == (512 * MIB, 1.0)
    settings = Settings(run_memory="1g", run_cpus=0.5)
    assert replica_limits(settings, _spec(None), host_cpus=2) == (1024 * MIB, 0.5)
    assert replica_limits(Settings(run_memory="0"), _spec(None), host_cpus=2) == (0, 1.0)


def test_a_size_is_that_many_gib_and_cpus_to_the_mib() -> None:
    assert replica_limits(Settings(), _spec(0.25), host_cpus=2) == (256 * MIB, 0.25)
    assert replica_limits(Settings(), _spec(0.6), host_cpus=2) == (614 * MIB, 0.6)
    # Docker refuses more CPUs than the host has: the host's, all the memory
    assert replica_limits(Settings(), _spec(4), host_cpus=2) == (4096 * MIB, 2.0)


@pytest.mark.parametrize("size", [0, 0.05, -1, 8.5, float("nan"), float("inf"), True, "1", [1]])
def test_sizes_outside_the_range_are_refused(size: object) -> None:
    with pytest.raises(BadRequest, match="from 0.1 to 8"):
        check_size(size, 8.0)


def test_the_largest_size_is_a_limit_and_sizes_are_kept_as_given() -> None:
    assert check_size(None, 8.0) is None
    assert check_size(1, 8.0) == 1.0 and check_size(0.6, 8.0) == 0.6
    settings, _ = load_settings(environ={"SHIPWAY_LIMIT_MAX_REPLICA_SIZE": "2.5"})
    assert settings.limits.max_replica_size == 2.5
    assert check_size(2.5, settings.limits.max_replica_size) == 2.5
    for bad in ("lots", "512m\n"):  # refused when the server starts
        with pytest.raises(ValueError, match="run_memory"):
            load_settings(environ={"SHIPWAY_RUN_MEMORY": bad})
