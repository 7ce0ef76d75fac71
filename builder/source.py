"""The pushed commit's files as a tar stream for the build container, with
git submodules fetched from their URLs with real git and added the same way.

Why C git and a stream: a 1 GB file of zeros is a 1 MB push. Reading each
blob whole (dulwich's `.data`) grew the server by the file's size, and the
tar was written to the host's disk at full size. Here sizes come first, from
the tree listing (`git ls-tree -l`: object headers, nothing inflated), so the
limits (one file, the whole tree) refuse the build before any data is read;
then `git cat-file --batch` streams each blob in chunks into a tar stream
that goes straight to Docker's `put_archive`: memory stays at one chunk, and
nothing of the source lands on the host's disk.

Nothing is checked out on the host: a symlink is a tar entry (its target as
text) extracted inside the container only, never followed here, and a path
that git's fsck would refuse (`..`, `.git`, a `/` inside a name) fails the
build (submodules fetched from elsewhere were never fsck'ed by us).

The fetching itself (which URLs, how git runs) is `builder/remote_git.py`.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Iterator

from dulwich.config import ConfigFile, parse_submodules

from builder.errors import BuildFailed
from builder.remote_git import fetch_commit, redact_url
from core.output import Output


CHUNK = 1024 * 1024
MAX_SYMLINK_TARGET = 4096  # PATH_MAX
MAX_GITMODULES = 1024 * 1024
_SHA = re.compile(r"\A[0-9a-f]{40}\Z")
BLOCK = tarfile.BLOCKSIZE


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _git_env(git_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_DIR"] = str(git_dir)
    return env


def _git(git_dir: Path, *args: str) -> bytes:
    done = subprocess.run(["git", *args], env=_git_env(git_dir), capture_output=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        raise BuildFailed(f"could not read the source (git {args[0]} failed)",
                          reason="build failed")
    return done.stdout


def _unsafe(name: bytes) -> bool:
    """A tree entry name no checkout may create (as git's fsck says)."""
    return (name in (b"", b".", b"..") or b"/" in name or b"\0" in name
            or name.lower() == b".git")


def ls_tree(git_dir: Path, sha: str) -> Iterator[tuple[int, str, str, int, bytes]]:
    """(mode, type, sha, size, path) for every entry under commit `sha`,
    trees first, streamed from `git ls-tree -r -t -l -z`."""
    proc = subprocess.Popen(["git", "ls-tree", "-r", "-t", "-l", "-z", "--full-tree", sha],
                            env=_git_env(git_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    rest = b""
    try:
        while chunk := proc.stdout.read(CHUNK):
            rest += chunk
            *records, rest = rest.split(b"\0")
            for record in records:
                meta, _, path = record.partition(b"\t")
                mode, kind, obj, size = meta.split()
                yield (int(mode, 8), kind.decode(), obj.decode(),
                       int(size) if size.isdigit() else 0, path)
    finally:
        proc.stdout.close()
        code = proc.wait()
    if code != 0:
        raise BuildFailed("could not read the source tree", reason="build failed")


class BlobReader:
    """One `git cat-file --batch` for a repository: blobs in chunks."""

    def __init__(self, git_dir: Path) -> None:
        self.proc = subprocess.Popen(["git", "cat-file", "--batch"], env=_git_env(git_dir),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)

    def chunks(self, sha: str, size: int) -> Iterator[bytes]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(sha.encode() + b"\n")
        stdin.flush()
        header = stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob" or int(header[2]) != size:
            raise BuildFailed(f"could not read object {sha[:12]} of the source",
                              reason="build failed")
        left = size
        while left:
            data = stdout.read(min(CHUNK, left))
            if not data:
                raise BuildFailed("the source ended early", reason="build failed")
            left -= len(data)
            yield data
        stdout.read(1)  # the newline after the contents

    def read(self, sha: str, size: int) -> bytes:
        return b"".join(self.chunks(sha, size))

    def close(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self.proc.kill()
        self.proc.wait()


class SourceExporter:
    """One commit (with submodules): `prepare()` checks limits and fetches
    submodules; `stream()` yields the tar (for `put_archive`)."""

    def __init__(self, work: Path, output: Output, uid: int = 1000, prefix: str = "app",
                 max_blob_bytes: int = 500 * 1024 * 1024,
                 max_tree_bytes: int = 2 * 1024 * 1024 * 1024) -> None:
        self.work, self.output = work, output
        self.uid, self.prefix = uid, prefix.strip("/")
        self.max_blob_bytes, self.max_tree_bytes = max_blob_bytes, max_tree_bytes
        self.total = 0
        self._clones = 0
        # (git dir, commit, base path, mtime) of the root and each submodule
        self._commits: list[tuple[Path, str, str, int]] = []
        self._submodule_dirs: dict[tuple[str, str], Path] = {}

    # --- checks, before any data ---------------------------------------------------
    def prepare(self, repo_path: Path, commit: str) -> None:
        self._prepare(Path(repo_path), commit, "")

    def _prepare(self, git_dir: Path, commit: str, base: str) -> None:
        if not _SHA.match(commit):
            raise BuildFailed(f"bad commit {commit[:50]!r}", reason="build failed")
        mtime = int(_git(git_dir, "show", "-s", "--format=%ct", commit).strip() or 0)
        self._commits.append((git_dir, commit, base, mtime))
        modules: dict[str, tuple[str, str]] | None = None
        for mode, kind, sha, size, raw in ls_tree(git_dir, commit):
            path = raw.decode("utf-8", "surrogateescape")
            shown = base + path
            if any(_unsafe(part) for part in raw.split(b"/")) or not raw:
                raise BuildFailed(f"the source has an unsafe path {shown[:200]!r}",
                                  reason="unsafe path in source")
            if kind == "blob":
                if mode & 0o170000 == 0o120000 and size > MAX_SYMLINK_TARGET:
                    raise BuildFailed(f"symlink {shown} has a target longer than "
                                      f"{MAX_SYMLINK_TARGET} bytes", reason="bad symlink")
                if size > self.max_blob_bytes:
                    raise BuildFailed(f"file {shown} is {_human(size)}, over the limit of "
                                      f"{_human(self.max_blob_bytes)} for one file",
                                      reason="file too large")
                self.total += size
                if self.total > self.max_tree_bytes:
                    raise BuildFailed(f"the source tree is over the limit of "
                                      f"{_human(self.max_tree_bytes)} (reached at {shown})",
                                      reason="source too large")
            elif kind == "commit":
                if modules is None:
                    modules = self._submodules(git_dir, commit)
                self._submodule(path, shown, sha, modules)

    def _submodules(self, git_dir: Path, commit: str) -> dict[str, tuple[str, str]]:
        """path -> (name, url) from the commit's own .gitmodules."""
        found = _git(git_dir, "ls-tree", "-l", "--full-tree", commit, "--", ".gitmodules")
        meta = found.split(b"\t", 1)[0].split()
        if len(meta) != 4 or meta[1] != b"blob":
            return {}
        size = int(meta[3]) if meta[3].isdigit() else 0
        if size > MAX_GITMODULES:
            raise BuildFailed(".gitmodules is too large", reason="bad .gitmodules")
        reader = BlobReader(git_dir)
        try:
            text = reader.read(meta[2].decode(), size)
        finally:
            reader.close()
        config = ConfigFile.from_file(io.BytesIO(text))
        return {path.decode(): (name.decode(), url.decode())
                for path, url, name in parse_submodules(config)}

    def _submodule(self, path: str, full: str, sha: str,
                   modules: dict[str, tuple[str, str]]) -> None:
        name, url = modules.get(path, (path, ""))
        if not url:
            raise BuildFailed(f"submodule {name} has no URL in .gitmodules",
                              reason=f"submodule {name} failed")
        self.output(f"-----> Fetching submodule {name} from {redact_url(url)}")
        self._clones += 1
        dest = self.work / f"submodule-{self._clones}.git"
        home = self.work / "git-home"
        home.mkdir(exist_ok=True)
        # fetch_commit raises BuildFailed in its own words, the URL redacted.
        fetch_commit(url, sha, dest, home, name=name)
        self._prepare(dest, sha, full + "/")

    # --- the tar stream --------------------------------------------------------------
    def stream(self) -> Iterator[bytes]:
        """The tar, in chunks of at most CHUNK plus a header."""
        yield self._header(self._info("", tarfile.DIRTYPE, 0o755, mtime=self._commits[0][3]))
        for git_dir, commit, base, mtime in self._commits:
            reader = BlobReader(git_dir)
            try:
                yield from self._entries(reader, git_dir, commit, base, mtime)
            finally:
                reader.close()
        yield b"\0" * (2 * BLOCK)

    def _entries(self, reader: BlobReader, git_dir: Path, commit: str, base: str,
                 mtime: int) -> Iterator[bytes]:
        for mode, kind, sha, size, raw in ls_tree(git_dir, commit):
            full = base + raw.decode("utf-8", "surrogateescape")
            if kind in ("tree", "commit"):  # a submodule's files follow later
                yield self._header(self._info(full, tarfile.DIRTYPE, 0o755, mtime=mtime))
            elif mode & 0o170000 == 0o120000:
                info = self._info(full, tarfile.SYMTYPE, 0o777, mtime=mtime)
                info.linkname = reader.read(sha, size).decode("utf-8", "surrogateescape")
                yield self._header(info)
            else:
                perm = 0o755 if mode & 0o111 else 0o644
                yield self._header(self._info(full, tarfile.REGTYPE, perm, size, mtime))
                yield from reader.chunks(sha, size)
                if size % BLOCK:
                    yield b"\0" * (BLOCK - size % BLOCK)

    def _info(self, name: str, kind: bytes, mode: int, size: int = 0,
              mtime: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(f"{self.prefix}/{name}" if name else self.prefix)
        info.type, info.mode, info.size = kind, mode, size
        info.uid = info.gid = self.uid
        info.uname = info.gname = "app"
        info.mtime = mtime
        return info

    @staticmethod
    def _header(info: tarfile.TarInfo) -> bytes:
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def export_source(repo_path: Path, commit: str, work: Path, output: Output,
                  uid: int = 1000, prefix: str = "app",
                  max_blob_bytes: int = 500 * 1024 * 1024,
                  max_tree_bytes: int = 2 * 1024 * 1024 * 1024) -> SourceExporter:
    """Check the commit's files (submodules included, fetched into `work`)
    against the limits; the returned exporter's `stream()` is the tar with
    them under `prefix/`. Raises BuildFailed naming the file and limit."""
    exporter = SourceExporter(work, output, uid=uid, prefix=prefix,
                              max_blob_bytes=max_blob_bytes, max_tree_bytes=max_tree_bytes)
    exporter.prepare(repo_path, commit)
    return exporter


def write_tar(stream: Iterator[bytes], out: IO[bytes]) -> None:
    """Copy a tar stream to a file (tests, tools)."""
    for chunk in stream:
        out.write(chunk)


def new_work_dir(base: Path) -> Path:
    """A private temp dir for one build, under `base` so leftovers are found."""
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="build-", dir=base))


def read_top_file(repo_path: Path, commit: str, name: str,
                  max_bytes: int = MAX_GITMODULES) -> str | None:
    """A small top-level file of the commit (.buildpacks, .slugignore), or
    None; its size is checked before it is read."""
    if not _SHA.match(commit):
        raise BuildFailed(f"bad commit {commit[:50]!r}", reason="build failed")
    found = _git(Path(repo_path), "ls-tree", "-l", "--full-tree", commit, "--", name)
    meta = found.split(b"\t", 1)[0].split()
    if len(meta) != 4 or meta[1] != b"blob":
        return None
    size = int(meta[3]) if meta[3].isdigit() else 0
    if size > max_bytes:
        raise BuildFailed(f"{name} is {_human(size)}, over the limit of {_human(max_bytes)}",
                          reason=f"bad {name}")
    reader = BlobReader(Path(repo_path))
    try:
        return reader.read(meta[2].decode(), size).decode("utf-8", "replace")
    finally:
        reader.close()
