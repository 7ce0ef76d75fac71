"""Run the real `shipway` CLI as a subprocess against the shared test
server, with HOME in a temp dir (so ~/.netrc and the config are the test's)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, ShipwayServer, unique


class Cli:
    def __init__(self, server: ShipwayServer, home: Path) -> None:
        self.server, self.home = server, home
        self.cwd = home
        self.env: dict[str, str] = {}

    def __call__(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                 input: str | None = None) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SHIPWAY_") and k not in ("NETRC",)}
        full_env.update({"HOME": str(self.home), "SHIPWAY_URL": self.server.url,
                         "PYTHONPATH": str(ROOT), "GIT_CONFIG_NOSYSTEM": "1",
                         "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                         "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})
        full_env.update(self.env)
        full_env.update(env or {})
        done = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=str(cwd or self.cwd),
                              env=full_env, capture_output=True, text=True, timeout=300,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def ok(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        done = self(*args, **kw)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kw).stdout)

    def fails(self, code: int, *args: str, **kw: Any) -> str:
        """Run, expect exit `code` and a one-line `Error: ...`; returns it."""
        done = self(*args, **kw)
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, done.stderr
        return errors[0]

    def signup(self) -> tuple[str, str]:
        email, password = f"{unique('c')}@example.com", "long enough password"
        self.ok("signup", "--email", email, "--password", password)
        return email, password


@pytest.fixture
def cli(shipway_server: ShipwayServer, tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(shipway_server, home)


@pytest.fixture
def logged_in(cli: Cli) -> Cli:
    cli.signup()
    return cli


@pytest.fixture
def app(logged_in: Cli) -> str:
    name = unique("cli")
    logged_in.ok("create", name)
    return name


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path
