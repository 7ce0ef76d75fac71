"""Where a replica unpacks its slug: memory for small slugs of known size,
a volume otherwise (the policy alone; test_docker_runner runs both)."""
from __future__ import annotations

import pytest

from runner.containers import app_dir_in_memory
from runner.interface import ReleaseSpec
from server.settings import Settings, load_settings

MB = 1024 * 1024


def _spec(packed: int | None, unpacked: int | None) -> ReleaseSpec:
    return ReleaseSpec(app="a", version=1, slug_key="a/x.tgz", process_types={"web": "x"},
                       env={}, formation={"web": 1}, slug_size=packed,
                       slug_unpacked_size=unpacked)


def test_a_small_slug_gets_a_tmpfs_with_room_for_page_rounding_and_app_files() -> None:
    size = app_dir_in_memory(Settings(), _spec(6 * MB, 20 * MB))
    assert size == 4 * 20 * MB + 6 * MB + 64 * MB
    assert app_dir_in_memory(Settings(), _spec(6 * MB, 64 * MB)) is not None  # at the limit


@pytest.mark.parametrize("packed, unpacked", [
    (None, 20 * MB),      # size unknown (an older Shipway's slug)
    (6 * MB, None),
    (30 * MB, 65 * MB),   # unpacks to more than run_tmpfs_max (64m)
    (6 * MB, 2 * MB),     # ISIZE below the compressed size: wrapped at 4 GiB
])
def test_other_slugs_go_to_a_volume(packed: int | None, unpacked: int | None) -> None:
    assert app_dir_in_memory(Settings(), _spec(packed, unpacked)) is None


def test_the_limit_is_a_setting_and_zero_turns_it_off() -> None:
    spec = _spec(30 * MB, 100 * MB)
    assert app_dir_in_memory(Settings(run_tmpfs_max="0"), _spec(1 * MB, 2 * MB)) is None
    assert app_dir_in_memory(Settings(), spec) is None
    assert app_dir_in_memory(Settings(run_tmpfs_max="128m"), spec) is not None
    assert load_settings(environ={"SHIPWAY_RUN_TMPFS_MAX": "1g"})[0].run_tmpfs_max == "1g"
    with pytest.raises(ValueError, match="run_tmpfs_max"):  # refused when the server starts
        load_settings(environ={"SHIPWAY_RUN_TMPFS_MAX": "lots"})
