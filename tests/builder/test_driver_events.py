"""The build driver's events are read from marked lines only (no Docker; the
builds themselves are tests/e2e/builder/test_buildpacks.py)."""
from __future__ import annotations

import pytest

from controller.errors import BuildFailed


def test_driver_events_are_read_from_marked_lines_only() -> None:
    from builder.buildpacks import Buildpack
    from builder.docker_builder import _DriverEvents

    shown: list[str] = []
    packs = [Buildpack("a", "/x/a"), Buildpack("b", "/x/b")]
    events = _DriverEvents(shown.append, "@@m@@", packs)
    for line in ["@@other@@ done", "@@m@@ detected 1 B  Label", "hello", "tail@@m@@ procfile d2ViOiBydW4K",
                 "@@m@@ release 1 0 LS0tCmRlZmF1bHRfcHJvY2Vzc190eXBlczoKICB3b3JrZXI6IHcK",
                 "@@m@@ packing", "@@m@@ done"]:
        events.line(line)
    assert events.result(0) == (["b"], {"web": "run", "worker": "w"})
    assert shown == ["@@other@@ done", "-----> B  Label app detected", "hello", "tail",
                     "-----> Process types: web, worker", "-----> Compressing the slug"]
    stopped = _DriverEvents(shown.append, "@@m@@", packs)
    stopped.line("@@m@@ detected 0")
    with pytest.raises(BuildFailed, match=r"the build stopped \(exit 137\)"):
        stopped.result(137)
    broken = _DriverEvents(shown.append, "@@m@@", packs)
    broken.line("@@m@@ compile-failed 0 2")
    broken.line("@@m@@ done")
    with pytest.raises(BuildFailed, match="buildpack a: compile failed"):
        broken.result(0)
    unpacked = _DriverEvents(shown.append, "@@m@@", packs)
    for line in ["@@m@@ detected 0", "@@m@@ packing", "tar: x: Cannot open", "@@m@@ pack-failed 2"]:
        unpacked.line(line)
    with pytest.raises(BuildFailed, match=r"could not pack the slug \(exit 2\)"):
        unpacked.result(1)
