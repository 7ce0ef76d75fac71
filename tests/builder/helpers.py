"""Real git repositories and a real git daemon for the builder tests."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Iterator

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/local/bin:/usr/bin:/bin"}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", "-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main",
                           *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


def write_tree(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        if name.split("/")[-2:-1] == ["bin"] or name.endswith(".sh"):
            path.chmod(0o755)


def commit_dir(work: Path, message: str = "commit") -> str:
    if not (work / ".git").exists():
        git("init", "-q", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def bare_from(work: Path, bare: Path) -> tuple[Path, str]:
    """Commit `work` and push it to a new bare repo (what gitd stores)."""
    sha = commit_dir(work)
    if not bare.exists():
        git("init", "-q", "--bare", str(bare))
    git("push", "-q", str(bare), "HEAD:refs/heads/main", cwd=work)
    return bare, sha


def make_app(tmp: Path, files: dict[str, str | bytes] | None = None,
             copy_from: Path | None = None, name: str = "app") -> tuple[Path, str]:
    work = tmp / f"{name}-work"
    work.mkdir(parents=True, exist_ok=True)
    if copy_from is not None:
        shutil.copytree(copy_from, work, dirs_exist_ok=True)
    write_tree(work, files or {})
    return bare_from(work, tmp / f"{name}.git")


def slug_members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def slug_file(path: Path, name: str) -> str:
    with tarfile.open(path, "r:gz") as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git_daemon(base: Path) -> Iterator[str]:
    """Serve every repo under `base` read-only over git:// on a free port."""
    port = free_port()
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all",
                             f"--base-path={base}", "--listen=127.0.0.1", f"--port={port}",
                             str(base)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"git://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


class HitCounter:
    """A TCP listener on 127.0.0.1 that counts connections (and answers
    `reply` to each, or stays silent)."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.hits = 0
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            if self.reply is None:
                self._held.append(conn)  # silent: never answers
                continue
            try:
                conn.recv(65536)
                conn.sendall(self.reply)
            finally:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()
