"""Where apps' bare repositories live: `<data_dir>/repos/<app>.git`.

Created on an app's first push (or fetch), removed when the app is destroyed.
App names are DNS labels checked by the controller, and gitd only asks for
the repo of an app the controller just authorized, so names are safe paths.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from dulwich.repo import Repo

from gitd.ingest import QUARANTINE_PREFIX, sweep_stale


class RepoStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "repos"
        self._mutex = threading.Lock()

    def path(self, app: str) -> Path:
        if not app or "/" in app or app.startswith("."):
            raise ValueError(f"bad app name {app!r}")
        return self.root / f"{app}.git"

    def ensure(self, app: str) -> Path:
        """The app's bare repository, created (atomically) if missing."""
        path = self.path(app)
        if (path / "HEAD").exists():
            # Quarantines a crash left behind (a live push holds its lock).
            sweep_stale(path / "objects")
            return path
        with self._mutex:
            if (path / "HEAD").exists():
                return path
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".new-{app}-{os.getpid()}-{threading.get_ident()}"
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(["git", "init", "--bare", "--quiet", "--initial-branch=main",
                            str(tmp)], check=True, capture_output=True)
            # A push that fails is not worth keeping in reflogs; gc may
            # prune what a failed push left behind.
            subprocess.run(["git", "-C", str(tmp), "config", "core.logAllRefUpdates", "false"],
                           check=True, capture_output=True)
            try:
                os.rename(tmp, path)
            except OSError:  # another process made it first
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    def remove(self, app: str) -> None:
        shutil.rmtree(self.path(app), ignore_errors=True)

    def sweep_all(self) -> int:
        """At server start: remove every quarantine no live push holds."""
        removed = 0
        if self.root.is_dir():
            for repo in self.root.glob("*.git"):
                removed += sweep_stale(repo / "objects")
        return removed

    def size(self, app: str) -> int:
        """Bytes the repository takes on disk (what the size limit counts):
        quarantines of pushes under way or left by a crash are not counted."""
        total = 0
        objects = self.path(app) / "objects"
        for dirpath, dirs, files in os.walk(self.path(app)):
            if Path(dirpath) == objects:
                dirs[:] = [d for d in dirs if not d.startswith(QUARANTINE_PREFIX)]
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
        return total

    @staticmethod
    def fix_head(path: Path) -> None:
        """Point HEAD at a branch that exists (main, else master, else any),
        so a clone checks something out."""
        repo = Repo(str(path))
        try:
            refs = repo.refs
            target = refs.get_symrefs().get(b"HEAD")
            heads = sorted(r for r in refs.keys() if r.startswith(b"refs/heads/"))
            if not heads or (target and target in heads):
                return
            for pick in (b"refs/heads/main", b"refs/heads/master", heads[0]):
                if pick in heads:
                    refs.set_symbolic_ref(b"HEAD", pick)
                    return
        finally:
            repo.close()
