"""What a replica may write (issue 14): its writable areas add up to
SHIPWAY_RUN_DISK, and a slug whose recorded unpacked size is more than its
/workspace is refused before any container starts (the policy alone;
test_docker_runner and tests/security/test_disk_limits run it)."""
from __future__ import annotations

import pytest

from runner.run_disk import SlugTooBig, check_slug_fits, run_storage
from runner.interface import ReleaseSpec
from core.settings import Settings, load_settings

MB = 1024 * 1024


def _spec(packed: int | None, unpacked: int | None) -> ReleaseSpec:
    return ReleaseSpec(app="a", version=1, slug_key="a/x.tgz", process_types={"web": "x"},
                       env={}, formation={"web": 1}, slug_size=packed,
                       slug_unpacked_size=unpacked)


def test_the_writable_areas_add_up_to_the_run_disk() -> None:
    storage = run_storage(Settings())
    assert storage.total == 1024 * MB
    assert storage.tmp == 256 * MB and storage.shipway == 8 * MB
    small = run_storage(Settings(run_disk="128m"))
    assert small.total == 128 * MB and small.tmp == 32 * MB and small.workspace == 88 * MB
    assert set(storage.tmpfs()) == {"/workspace", "/tmp", "/shipway"}
    assert storage.tmpfs()["/workspace"].startswith(f"size={storage.workspace},")


def test_a_slug_that_fits_passes() -> None:
    check_slug_fits(Settings(run_disk="128m"), _spec(1 * MB, 80 * MB))
    check_slug_fits(Settings(), _spec(None, None))  # unknown: bounded by the tmpfs alone


@pytest.mark.parametrize("packed, unpacked", [
    (1 * MB, 100 * MB),    # zeros: tiny packed, too big unpacked
    (100 * MB, 10 * MB),   # wrapped gzip size: taken for more
    (100 * MB, None),      # packed alone is more
])
def test_a_slug_that_unpacks_past_the_run_disk_is_refused(packed: int, unpacked: int | None) -> None:
    with pytest.raises(SlugTooBig, match="slug unpacks to more than 88 MB"):
        check_slug_fits(Settings(run_disk="128m"), _spec(packed, unpacked))


def test_the_disks_are_settings() -> None:
    settings = load_settings(environ={"SHIPWAY_RUN_DISK": "2g", "SHIPWAY_BUILD_DISK": "8g"})[0]
    assert (settings.run_disk, settings.build_disk) == ("2g", "8g")
    with pytest.raises(ValueError, match="run_disk"):  # refused when the server starts
        load_settings(environ={"SHIPWAY_RUN_DISK": "lots"})
