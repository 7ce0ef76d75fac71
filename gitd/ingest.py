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

Every object is checked as C git's `receive.fsckObjects` does (`index-pack
--strict`: warnings such as a tree entry `..` or `.git` are errors), blobs
above `core.bigFileThreshold` are hashed as they stream instead of being
held whole, and a blob over the single-file limit is refused before the
objects join the repository. Each quarantine holds a lock on its directory
while it lives, so one left by a crash (lock released with the process) is
told apart from a push under way and removed (`sweep_stale`).
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator, Protocol

CHUNK = 256 * 1024
# Blobs bigger than this are streamed by index-pack (hashed and written as
# they arrive, never inflated whole in its memory) and never deltified.
BIG_FILE_THRESHOLD = "32m"
QUARANTINE_PREFIX = "incoming-"
# A client that stops sending in the middle of a pack (and keeps the
# connection open) must not hold a thread and an index-pack forever.
IDLE_TIMEOUT = 120.0


class PackError(Exception):
    """The pack was refused; `str()` is the reason for "unpack <reason>"."""


class Source(Protocol):
    def recv(self, n: int, timeout: float | None = None) -> bytes: ...

    @property
    def eof(self) -> bool: ...


_FSCK = re.compile(r"^(?:error|fatal): object ([0-9a-f]{40,64}): (\w+): (.*)$")


def _last_error(text: str, hide: Path | None = None) -> str:
    """index-pack's reason, in our words: an fsck finding as "object X
    refused by fsck (msgId: what)", anything else as git's first error line
    with the server's paths taken out."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        found = _FSCK.match(line)
        if found:
            sha, msg_id, what = found.groups()
            return f"object {sha[:12]} refused by fsck ({msg_id}: {what[:200]})"
    reason = lines[-1] if lines else "index-pack failed"
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                reason = line[len(prefix):]
                break
        else:
            continue
        break
    if hide is not None:
        reason = reason.replace(str(hide), "<repository>")
    if "/" in reason and ("'" in reason or '"' in reason):
        reason = re.sub(r"(['\"])/[^'\"]*\1", r"\1<path>\1", reason)
    return reason[:300]


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _lock(path: Path, blocking: bool) -> int | None:
    """An exclusive flock on directory `path` (its fd), or None if held."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    return fd


def quarantines(objects: Path) -> Iterator[Path]:
    try:
        names = os.listdir(objects)
    except OSError:
        return
    for name in names:
        if name.startswith(QUARANTINE_PREFIX):
            yield objects / name


def sweep_stale(objects: Path) -> int:
    """Remove quarantines no live push holds (left by a crash mid-push);
    returns how many. Safe while pushes run: a live one holds its lock."""
    removed = 0
    for path in quarantines(objects):
        fd = _lock(path, blocking=False)
        if fd is None:
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        finally:
            os.close(fd)
    return removed


class Quarantine:
    """One push's incoming objects, kept apart until accepted."""

    def __init__(self, repo_path: Path) -> None:
        self.repo_path = Path(repo_path)
        self.objects = self.repo_path / "objects"
        self._fd: int | None = None
        for _ in range(5):
            self.path = self.objects / f"{QUARANTINE_PREFIX}{uuid.uuid4().hex[:12]}"
            self.path.mkdir(parents=True)
            self._fd = _lock(self.path, blocking=True)
            try:
                # Fails if a sweep took the directory between mkdir and lock.
                (self.path / "pack").mkdir()
                break
            except FileNotFoundError:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
        else:
            raise PackError("could not make a quarantine for the push")
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
                ["git", "-c", f"core.bigFileThreshold={BIG_FILE_THRESHOLD}",
                 "index-pack", "--stdin", "--fix-thin", "--strict",
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
                raise PackError(_last_error(err.read().decode("utf-8", "replace"),
                                            hide=self.repo_path))
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

    def check(self, tips: list[str], max_blob_bytes: int | None = None) -> dict[str, str]:
        """The type of each pushed tip ("missing" if absent), after checking
        that everything the tips reach is present and that no new blob is
        over `max_blob_bytes` (sizes from the object headers: nothing read)."""
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
            self._walk_new(present, max_blob_bytes)
        return {t: types.get(t, "missing") for t in tips}

    def _walk_new(self, tips: list[str], max_blob_bytes: int | None) -> None:
        """rev-list the objects the tips bring (with their paths) into
        cat-file for sizes, streamed: a push of a million files costs a
        pipe, not a list in memory."""
        env, cwd = self.env(), str(self.repo_path)
        walk = subprocess.Popen(["git", "rev-list", "--objects", "--stdin", "--not", "--all"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        sizes = subprocess.Popen(
            ["git", "cat-file", "--batch-check=%(objecttype) %(objectsize) %(rest)"],
            stdin=walk.stdout, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, cwd=cwd)
        assert walk.stdin is not None and walk.stdout is not None and sizes.stdout is not None
        walk.stdout.close()  # the cat-file child has it
        walk.stdin.write(("\n".join(tips) + "\n").encode())
        walk.stdin.close()
        too_big: tuple[str, int] | None = None
        try:
            for line in sizes.stdout:
                kind, _, rest = line.rstrip(b"\n").partition(b" ")
                size_text, _, path = rest.partition(b" ")
                if kind != b"blob" or max_blob_bytes is None or too_big is not None:
                    continue
                if size_text.isdigit() and int(size_text) > max_blob_bytes:
                    too_big = (path.decode("utf-8", "replace")[:200], int(size_text))
        finally:
            code = walk.wait()
            sizes.wait()
        if too_big is not None:
            path, size = too_big
            raise PackError(f"file {path} is {_human(size)}, over the limit of "
                            f"{_human(max_blob_bytes or 0)} for one file")
        if code != 0:
            raise PackError("missing necessary objects")

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
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
