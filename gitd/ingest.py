"""Pack ingestion: the pushed pack goes to C git's `index-pack` in a
quarantine directory, is checked, and only then joins the repository.

Why not dulwich's `add_thin_pack`: it parses and hashes the pack in Python,
about 2x slower than C git on big pushes (see bench/push_throughput.py).
dulwich still speaks the protocol (gitd/receive.py); only the pack bytes are
streamed, as they arrive, to `git index-pack --stdin --fix-thin`, which is
what C git's receive-pack does. The quarantine (an objects dir of its own,
with the repository as its alternate, like git's `tmp_objdir`) means a
truncated, corrupt, oversized or disconnected pack leaves the repository
exactly as it was: the directory is simply removed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Protocol

CHUNK = 256 * 1024
# A client that stops sending in the middle of a pack (and keeps the
# connection open) must not hold a thread and an index-pack forever.
IDLE_TIMEOUT = 120.0


class PackError(Exception):
    """The pack was refused; `str()` is the reason for "unpack <reason>"."""


class Source(Protocol):
    def recv(self, n: int, timeout: float | None = None) -> bytes: ...

    @property
    def eof(self) -> bool: ...


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line[len(prefix):]
    return lines[-1] if lines else "index-pack failed"


class Quarantine:
    """One push's incoming objects, kept apart until accepted."""

    def __init__(self, repo_path: Path) -> None:
        self.repo_path = Path(repo_path)
        self.objects = self.repo_path / "objects"
        self.path = self.objects / f"incoming-{uuid.uuid4().hex[:12]}"
        (self.path / "pack").mkdir(parents=True)
        self.pack_bytes = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "GIT_DIR": str(self.repo_path),
            "GIT_OBJECT_DIRECTORY": str(self.path),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(self.objects),
            "GIT_QUARANTINE_PATH": str(self.path),
        })
        env.pop("GIT_WORK_TREE", None)
        return env

    def _git(self, args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], input=stdin, capture_output=True,
                              env=self.env(), cwd=str(self.repo_path))

    def receive(self, source: Source, max_bytes: int) -> None:
        """Stream the pack from `source` into index-pack. Raises PackError."""
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                ["git", "index-pack", "--stdin", "--fix-thin",
                 f"--max-input-size={max(max_bytes, 1)}"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                env=self.env(), cwd=str(self.repo_path), bufsize=0)
            assert proc.stdin is not None
            try:
                self._pump(source, proc, max_bytes)
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
                rc = proc.wait()
            if rc != 0:
                err.seek(0)
                raise PackError(_last_error(err.read().decode("utf-8", "replace")))
        self.pack_bytes = sum(p.stat().st_size for p in (self.path / "pack").iterdir())

    def _pump(self, source: Source, proc: subprocess.Popen, max_bytes: int) -> None:
        """Copy until index-pack has the whole pack (it exits by itself after
        the trailer; the client sends nothing more) or the input ends."""
        received = 0
        last = time.monotonic()
        while True:
            chunk = source.recv(CHUNK, 0.05)
            if chunk:
                last = time.monotonic()
                received += len(chunk)
                if received > max_bytes:
                    proc.kill()
                    raise PackError(f"push exceeds the repository size limit "
                                    f"({max_bytes} bytes left)")
                try:
                    proc.stdin.write(chunk)
                except (BrokenPipeError, ValueError):
                    return
            elif source.eof or proc.poll() is not None:
                return
            elif time.monotonic() - last > IDLE_TIMEOUT:
                proc.kill()
                raise PackError(f"no pack data for {IDLE_TIMEOUT:.0f}s; giving up")

    def check(self, tips: list[str]) -> dict[str, str]:
        """The type of each pushed tip ("missing" if absent), after checking
        that everything the tips reach is present."""
        if not tips:
            return {}
        out = self._git(["cat-file", "--batch-check"], ("\n".join(tips) + "\n").encode())
        types: dict[str, str] = {}
        for line in out.stdout.decode().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                types[parts[0]] = parts[1]
        present = [t for t in tips if types.get(t, "missing") != "missing"]
        if present:
            walk = self._git(["rev-list", "--objects", "--stdin", "--not", "--all", "--quiet"],
                             ("\n".join(present) + "\n").encode())
            if walk.returncode != 0:
                raise PackError("missing necessary objects")
        return {t: types.get(t, "missing") for t in tips}

    def migrate(self) -> None:
        """Move the accepted pack into the repository (renames on one file
        system; the index last, since git finds packs by their .idx)."""
        dest = self.objects / "pack"
        dest.mkdir(exist_ok=True)
        files = sorted((self.path / "pack").iterdir(), key=lambda p: p.suffix == ".idx")
        for f in files:
            os.replace(f, dest / f.name)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
