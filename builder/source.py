"""The pushed commit's files as a tar stream for the build container: the
tree walked with dulwich, git submodules fetched from their URLs with real
git and walked the same way.

The fetching itself (which URLs, how git runs) is `builder/remote_git.py`.
"""
from __future__ import annotations

import io
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

from dulwich.config import ConfigFile, parse_submodules
from dulwich.objects import Tree
from dulwich.repo import Repo

from builder.remote_git import fetch_commit
from controller.errors import BuildFailed

Output = Callable[[str], None]

S_IFGITLINK = 0o160000


class SourceExporter:
    """Writes one commit (with submodules) into a tar for `put_archive`."""

    def __init__(self, tar: tarfile.TarFile, work: Path, output: Output,
                 uid: int = 1000, prefix: str = "app") -> None:
        self.tar, self.work, self.output = tar, work, output
        self.uid, self.prefix = uid, prefix.strip("/")
        self._clones = 0

    def export(self, repo_path: Path, commit: str) -> None:
        repo = Repo(str(repo_path))
        try:
            self._export_commit(repo, commit.encode(), "")
        finally:
            repo.close()

    def _info(self, name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(f"{self.prefix}/{name}" if name else self.prefix)
        info.type, info.mode, info.size = kind, mode, size
        info.uid = info.gid = self.uid
        info.uname = info.gname = "app"
        info.mtime = self._mtime
        return info

    def _export_commit(self, repo: Repo, sha: bytes, base: str) -> None:
        commit = repo[sha]
        self._mtime = commit.commit_time
        tree = repo[commit.tree]
        assert isinstance(tree, Tree)
        modules = self._submodules(repo, tree)
        if not base:
            self.tar.addfile(self._info("", tarfile.DIRTYPE, 0o755))
        self._walk(repo, tree, base, modules)

    def _submodules(self, repo: Repo, tree: Tree) -> dict[str, tuple[str, str]]:
        """path -> (name, url) from the commit's own .gitmodules."""
        try:
            _, sha = tree.lookup_path(repo.object_store.__getitem__, b".gitmodules")
        except KeyError:
            return {}
        config = ConfigFile.from_file(io.BytesIO(repo[sha].data))
        return {path.decode(): (name.decode(), url.decode())
                for path, url, name in parse_submodules(config)}

    def _walk(self, repo: Repo, tree: Tree, base: str,
              modules: dict[str, tuple[str, str]], rel: str = "") -> None:
        for entry in tree.iteritems():
            name = f"{rel}{entry.path.decode('utf-8', 'surrogateescape')}"
            full = f"{base}{name}"
            mode = entry.mode
            if stat.S_ISDIR(mode):
                self.tar.addfile(self._info(full, tarfile.DIRTYPE, 0o755))
                self._walk(repo, repo[entry.sha], base, modules, name + "/")
            elif mode == S_IFGITLINK:
                self._submodule(name, full, entry.sha.decode(), modules)
            elif stat.S_ISLNK(mode):
                info = self._info(full, tarfile.SYMTYPE, 0o777)
                info.linkname = repo[entry.sha].data.decode("utf-8", "surrogateescape")
                self.tar.addfile(info)
            else:
                data = repo[entry.sha].data
                perm = 0o755 if mode & 0o111 else 0o644
                self.tar.addfile(self._info(full, tarfile.REGTYPE, perm, len(data)),
                                 io.BytesIO(data))

    def _submodule(self, path: str, full: str, sha: str,
                   modules: dict[str, tuple[str, str]]) -> None:
        name, url = modules.get(path, (path, ""))
        if not url:
            raise BuildFailed(f"submodule {name} has no URL in .gitmodules",
                              reason=f"submodule {name} failed")
        self.output(f"-----> Fetching submodule {name} from {url}")
        self._clones += 1
        dest = self.work / f"submodule-{self._clones}.git"
        home = self.work / "git-home"
        home.mkdir(exist_ok=True)
        try:
            fetch_commit(url, sha, dest, home)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            raise BuildFailed(f"submodule {name} ({url}) could not be fetched: {e}",
                              reason=f"submodule {name} failed") from None
        self.tar.addfile(self._info(full, tarfile.DIRTYPE, 0o755))
        sub = Repo(str(dest))
        try:
            mtime = self._mtime
            self._export_commit(sub, sha.encode(), full + "/")
            self._mtime = mtime
        finally:
            sub.close()


def export_source(repo_path: Path, commit: str, tar: tarfile.TarFile, work: Path,
                  output: Output, uid: int = 1000, prefix: str = "app") -> None:
    """Add the commit's files (submodules included) under `prefix/` to `tar`."""
    SourceExporter(tar, work, output, uid=uid, prefix=prefix).export(repo_path, commit)


def new_work_dir(base: Path) -> Path:
    """A private temp dir for one build, under `base` so leftovers are found."""
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="build-", dir=base))
