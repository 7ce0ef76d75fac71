"""The source export (builder/source.py): limits checked from object sizes
before any data is read, blobs streamed in bounded memory, symlinks kept as
tar entries (never followed on the host), unsafe paths refused."""
from __future__ import annotations

import io
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from builder.source import export_source
from controller.errors import BuildFailed

MIB = 1024 * 1024


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], input=input, check=True,
                          capture_output=True).stdout.decode().strip()


def make_repo(tmp_path: Path, files: dict[str, int], link: str | None = None) -> tuple[Path, str]:
    """A repo whose files are sparse zeros of the given sizes."""
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    for name, size in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(name.encode())
            f.truncate(size)
    if link:
        (repo / "hostlink").symlink_to(link)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    return repo / ".git", git(repo, "rev-parse", "HEAD")


def test_big_blob_streams_in_bounded_memory(tmp_path: Path) -> None:
    git_dir, commit = make_repo(tmp_path, {"big.bin": 200 * MIB, "small.txt": 10})
    exporter = export_source(git_dir, commit, tmp_path, print, prefix="app")
    tracemalloc.start()
    total = 0
    try:
        for chunk in exporter.stream():
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 200 * MIB
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_one_file_over_the_limit_fails_before_reading(tmp_path: Path) -> None:
    git_dir, commit = make_repo(tmp_path, {"ok.txt": 10, "dir/huge.bin": 6 * MIB})
    with pytest.raises(BuildFailed) as caught:
        export_source(git_dir, commit, tmp_path, print, max_blob_bytes=5 * MIB)
    assert "dir/huge.bin is 6.0 MiB, over the limit of 5.0 MiB" in str(caught.value)


def test_tree_over_the_limit_fails_and_under_passes(tmp_path: Path) -> None:
    files = {f"f{i}": 3 * MIB for i in range(4)}  # 12 MiB
    git_dir, commit = make_repo(tmp_path, files)
    with pytest.raises(BuildFailed) as caught:
        export_source(git_dir, commit, tmp_path, print, max_tree_bytes=10 * MIB)
    assert "source tree is over the limit of 10.0 MiB" in str(caught.value)
    export_source(git_dir, commit, tmp_path, print, max_tree_bytes=13 * MIB)


def test_symlink_to_a_host_path_is_a_tar_symlink(tmp_path: Path) -> None:
    git_dir, commit = make_repo(tmp_path, {"a.txt": 3}, link="/etc/shadow")
    data = b"".join(export_source(git_dir, commit, tmp_path, print, prefix="app").stream())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember("app/hostlink")
        assert member.issym() and member.linkname == "/etc/shadow"
        assert tar.extractfile("app/a.txt").read() == b"a.t"


@pytest.mark.parametrize("name", [b"..", b".git", b".Git"])
def test_unsafe_tree_entry_fails_the_build(tmp_path: Path, name: bytes) -> None:
    git_dir, _ = make_repo(tmp_path, {"a.txt": 3})
    blob = git(git_dir.parent, "hash-object", "-w", "--stdin", input=b"x")
    raw = b"100644 " + name + b"\0" + bytes.fromhex(blob)
    tree = git(git_dir.parent, "hash-object", "-t", "tree", "-w", "--literally", "--stdin",
               input=raw)
    commit = git(git_dir.parent, "-c", "user.name=t", "-c", "user.email=t@t",
                 "commit-tree", tree, "-m", "evil")
    with pytest.raises(BuildFailed) as caught:
        export_source(git_dir, commit, tmp_path, print)
    assert "unsafe path" in str(caught.value)
