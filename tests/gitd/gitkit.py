"""Drive the real `git` client and OpenSSH `ssh` against a test server: a
pusher has its own HOME (with ~/.netrc), SSH key and working copy."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.conftest import ShipwayServer, TestUser, unique


def run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
        check: bool = True, timeout: float = 60, input: bytes | None = None
        ) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, timeout=timeout,
                          input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n"
                             f"{proc.stdout.decode(errors='replace')}\n"
                             f"{proc.stderr.decode(errors='replace')}")
    return proc


class Pusher:
    """One user at one machine: HOME, SSH key registered, git identity."""

    def __init__(self, server: ShipwayServer, user: TestUser, home: Path,
                 register_key: bool = True) -> None:
        self.server, self.user, self.home = server, user, home
        home.mkdir(parents=True, exist_ok=True)
        self.key = home / "id_ed25519"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", user.email, "-f", str(self.key)])
        if register_key:
            r = user.api.post("/api/account/ssh_keys",
                              json={"key": (home / "id_ed25519.pub").read_text().strip()})
            assert r.status_code == 201, r.text
        host = urlparse(server.url).hostname
        (home / ".netrc").write_text(f"machine {host}\nlogin {user.email}\n"
                                     f"password {user.api_key}\n")
        (home / ".netrc").chmod(0o600)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update({
            "HOME": str(self.home),
            "GIT_SSH_COMMAND": (f"ssh -i {self.key} -o IdentitiesOnly=yes "
                                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                f"-o LogLevel=ERROR -p {self.server.ssh_port}"),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Tester", "GIT_AUTHOR_EMAIL": self.user.email,
            "GIT_COMMITTER_NAME": "Tester", "GIT_COMMITTER_EMAIL": self.user.email,
        })
        env.update(extra)
        return env

    def ssh_url(self, app: str) -> str:
        return f"ssh://git@127.0.0.1:{self.server.ssh_port}/{app}.git"

    def http_url(self, app: str) -> str:
        return f"{self.server.url}/{app}.git"

    def create_app(self, name: str | None = None) -> str:
        r = self.user.api.post("/api/apps", json={"name": name or unique("app")})
        assert r.status_code == 201, r.text
        return r.json()["name"]

    def git(self, *args: str, cwd: Path | None = None, check: bool = True,
            **extra: Any) -> subprocess.CompletedProcess:
        return run(["git", *args], cwd=cwd, env=self.env(**extra), check=check)

    def new_repo(self, name: str = "work", files: dict[str, str] | None = None) -> Path:
        path = self.home / name
        self.git("init", "-q", "-b", "main", str(path))
        for rel, text in (files or {"README": "hello\n"}).items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(text)
        self.git("add", "-A", cwd=path)
        self.git("commit", "-q", "-m", "first", cwd=path)
        return path

    def commit(self, repo: Path, rel: str = "file.txt", text: str | None = None) -> str:
        (repo / rel).write_text(text if text is not None else unique("c") + "\n")
        self.git("add", "-A", cwd=repo)
        self.git("commit", "-q", "-m", f"change {rel}", cwd=repo)
        return self.head(repo)

    def head(self, repo: Path, rev: str = "HEAD") -> str:
        return self.git("rev-parse", rev, cwd=repo).stdout.decode().strip()


def remote_refs(pusher: Pusher, url: str) -> dict[str, str]:
    out = pusher.git("ls-remote", url).stdout.decode()
    refs = {}
    for line in out.splitlines():
        sha, ref = line.split("\t")
        refs[ref] = sha
    return refs


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
