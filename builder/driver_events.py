"""What the build driver (files/run_buildpacks.sh) says, read on the
builder's side: its stderr arrives in chunks (`LineStream` makes lines),
plain lines go to the pusher and the lines carrying the build's mark are
events (`DriverEvents`: detected, compile-failed, release, procfile,
packing, done...), which decide the build's result or its failure. Kept
apart from the Docker calls so it can be tested on its own lines.
"""
from __future__ import annotations

import base64

import yaml

from builder.buildpacks import Buildpack
from builder.errors import BuildFailed
from builder.interface import Output


def parse_procfile(text: str) -> dict[str, str]:
    types: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#") and command.strip():
            types[name.strip()] = command.strip()
    return types


class LineStream:
    """Splits exec output chunks into lines for `output`."""

    def __init__(self, output: Output) -> None:
        self.output, self.buf = output, b""

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            self.output(line.rstrip(b"\r").decode("utf-8", "replace"))

    def close(self) -> None:
        if self.buf:
            self.output(self.buf.decode("utf-8", "replace"))
            self.buf = b""


class DriverEvents:
    """Reads run_buildpacks.sh's output: plain lines go to the pusher,
    lines with the build's mark are events (see the script's header)."""

    def __init__(self, output: Output, mark: str, packs: list[Buildpack]) -> None:
        self.output, self.mark, self.packs = output, mark, packs
        self.chosen: list[Buildpack] = []
        self.defaults: dict[str, str] = {}
        self.procfile: dict[str, str] = {}
        self.failure: BuildFailed | None = None
        self.packing = self.done = False
        self.disk_full = False
        self.disk_limit = ""  # SHIPWAY_BUILD_DISK, named when the build ran out of it

    def line(self, text: str) -> None:
        if "No space left on device" in text:  # issue 14: said plainly at the end
            self.disk_full = True
        if self.mark not in text:
            self.output(text)
            return
        before, _, after = text.partition(self.mark)
        if before:  # output that did not end with a newline
            self.output(before)
        if self.failure is None:
            try:
                self._event(after.strip().split(" ", 3))
            except (ValueError, IndexError) as e:
                self.failure = BuildFailed(f"build driver said {after.strip()[:200]!r}: {e}",
                                           reason="build failed")

    def _pack(self, index: str) -> Buildpack:
        return self.packs[int(index)]

    def _event(self, words: list[str]) -> None:
        kind = words[0]
        if kind == "detected":
            pack = self._pack(words[1])
            label = " ".join(words[2:]).strip() or pack.name
            self.chosen.append(pack)
            self.output(f"-----> {label} app detected")
        elif kind == "detect-failed":
            self.failure = BuildFailed(
                f"buildpack {self._pack(words[1]).name}: this app is not compatible "
                f"(bin/detect exited {words[2]})", reason="build failed")
        elif kind == "none-detected":
            self.failure = BuildFailed(
                "no buildpack detected: add a Procfile, mix.exs, requirements.txt or "
                "package.json, or a .buildpacks file", reason="no buildpack detected")
        elif kind == "compile-failed":
            self.failure = BuildFailed(
                f"buildpack {self._pack(words[1]).name}: compile failed (exit {words[2]})",
                reason="build failed")
        elif kind == "release":
            self._release(self._pack(words[1]), int(words[2]), _b64(words[3:]))
        elif kind == "procfile":
            self.procfile = parse_procfile(_b64(words[1:]))
        elif kind == "workspace-failed":
            self.failure = BuildFailed("could not put the source in the build workspace",
                                       reason="build failed")
        elif kind == "packing":
            self.packing = True
            process_types = self.process_types()
            if process_types:
                self.output("-----> Process types: " + ", ".join(sorted(process_types)))
            self.output("-----> Compressing the slug")
        elif kind == "pack-failed":
            self.failure = BuildFailed(f"could not pack the slug (exit {words[1]})",
                                       reason="build failed")
        elif kind == "done":
            self.done = True

    def _release(self, pack: Buildpack, code: int, said: str) -> None:
        """bin/release's YAML: its default_process_types count."""
        if code != 0:
            self.failure = BuildFailed(f"buildpack {pack.name}: release failed (exit {code}): "
                                       f"{said.strip()[-500:]}", reason="build failed")
            return
        try:
            data = yaml.safe_load(said) or {}
        except yaml.YAMLError as e:
            self.failure = BuildFailed(f"buildpack {pack.name}: bin/release printed invalid "
                                       f"YAML: {e}", reason="build failed")
            return
        types = data.get("default_process_types") if isinstance(data, dict) else None
        self.defaults.update({str(k): str(v) for k, v in (types or {}).items()})

    def result(self, code: int) -> tuple[list[str], dict[str, str]]:
        if self.disk_full and (self.failure is not None or code != 0):
            raise BuildFailed(disk_full_message(self.disk_limit), reason="build disk full")
        if self.failure is not None:
            raise self.failure
        if not self.done or code != 0:
            raise BuildFailed(f"the build stopped (exit {code})", reason="build failed")
        return [p.name for p in self.chosen], self.process_types()

    def process_types(self) -> dict[str, str]:
        return {**self.defaults, **self.procfile}


def disk_full_message(limit: str) -> str:
    return (f"the build ran out of disk: a build may write at most {limit} "
            "(source, /app, cache and /tmp; SHIPWAY_BUILD_DISK)")


def _b64(words: list[str]) -> str:
    return base64.b64decode("".join(words)).decode("utf-8", "replace")


_DriverEvents = DriverEvents  # the name tests/builder/test_driver_events.py knows
