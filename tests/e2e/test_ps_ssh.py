"""`shipway ps:ssh`: a command (or shell) in a running replica, through the
git SSH server, with the app's environment; refused for a user without
access to the app and for a replica that does not exist."""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.ps import ssh_argv
from controller.ssh_host_keys import new_host_key, public_host_key
from tests.conftest import ROOT
from tests.e2e.helpers import User, fetch, new_app

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _with_key(user: User) -> Path:
    ssh_dir = user.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    key = ssh_dir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    user.shipway("account:ssh_keys:add", f"@{key}.pub")
    return key


def test_ps_ssh_runs_in_the_replica_and_checks_access(make_server, tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "owner", "procfile", "sshps")
    # Before the push: a replica reads the app's keys when it starts. ssh
    # looks for keys in the passwd home, not $HOME: name the key.
    key = str(_with_key(user))
    user.push()

    run = user.shipway("-a", app, "ps:ssh", "-i", key, "--", 'echo "[$APP_NAME $APP_VERSION $(id -un)]";'
                       " cat /app/Procfile; pwd")
    assert f"[{app} v1 app]" in run.stdout, run.stderr
    assert "web: python3 serve.py" in run.stdout and "/app" in run.stdout

    # ps:run: the command's exit status is the CLI's.
    failed = user.shipway("-a", app, "ps:run", "-i", key, "--", "echo out; exit 3", check=False)
    assert failed.returncode == 3 and "out" in failed.stdout

    [replica] = user.shipway_json("-a", app, "ps")["replicas"]
    chosen = user.shipway("-a", app, "ps:ssh", "-i", key, "-r", replica["container_id"][:8],
                            "hostname")
    assert chosen.stdout.strip(), chosen.stderr
    missing = user.shipway("-a", app, "ps:ssh", "-i", key, "-r", "deadbeef", "true",
                           check=False)
    assert missing.returncode != 0 and "no running replica deadbeef" in missing.stderr

    # The replica presents the app's host key, which the CLI requires (the
    # runs above passed that check); any other key is refused before a
    # session starts. The private key is in no environment.
    info = user.shipway_json("-a", app, "apps:info")
    assert info["ssh_host_key"].startswith("ssh-ed25519 ")
    wrong = public_host_key(new_host_key())
    argv = ssh_argv(info["urls"]["git_ssh"], app, None, key, ["echo reached"], interactive=False,
                    host_key=wrong)
    spoofed = subprocess.run(argv, env=user.env, capture_output=True, text=True, timeout=60)
    assert spoofed.returncode != 0 and "reached" not in spoofed.stdout
    assert "Host key verification failed" in spoofed.stderr, spoofed.stderr
    envs = user.shipway("-a", app, "ps:run", "-i", key, "--",
                        "env; cat /shipway/env; cat /proc/1/environ /proc/self/environ; "
                        "ls /shipway")
    assert "PRIVATE KEY" not in envs.stdout and "SSH_HOST_KEY" not in envs.stdout, envs.stdout
    assert "ssh_host_key" not in envs.stdout.split()  # moved into sshd's own directory

    stranger = User(server, tmp_path / "stranger")
    stranger.shipway("signup", "--email", "stranger@example.com", "--password", "correct horse battery")
    other_key = str(_with_key(stranger))
    refused = stranger.shipway("-a", app, "ps:ssh", "-i", other_key, "--", "cat /shipway/env",
                               check=False)
    assert refused.returncode != 0 and f"no app named '{app}'" in refused.stderr
    # The gateway itself refuses too (ssh used directly, without the CLI).
    git_ssh = user.shipway_json("-a", app, "apps:info")["urls"]["git_ssh"]
    for target in (None, replica["container_id"][:12]):
        argv = ssh_argv(git_ssh, app, target, other_key, ["cat /shipway/env"], interactive=False)
        direct = subprocess.run(argv, env=stranger.env, capture_output=True, text=True, timeout=60)
        assert direct.returncode != 0
        assert f"no app named {app} that you can change" in direct.stderr, direct.stderr
        assert "SECRET_KEY_BASE" not in direct.stdout


def _in_a_terminal(argv: list[str], env: dict[str, str], expression: bytes,
                   expect: bytes, timeout: float = 90) -> bytes:
    """Run `argv` on a pseudo-terminal (IEx attaches to a remote node only on
    a terminal), type `expression` at the first prompt, and return what the
    terminal showed once `expect` appeared. Closing the terminal hangs the
    session up, which leaves the remote shell (never the app node)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=str(ROOT), env=env, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    seen, typed = b"", False
    deadline = time.monotonic() + timeout
    try:
        while expect not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:  # the session ended
                    break
            if not typed and b"iex(" in seen:
                os.write(master, expression + b"\r")
                typed = True
        return seen
    finally:
        os.close(master)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_remote_console_reaches_the_running_elixir_node(make_server, tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "owner", "elixir", "iex")
    key = str(_with_key(user))
    user.push()
    expect = b" serving v1\r\n"
    shown = _in_a_terminal(
        [sys.executable, "-m", "cli.main", "-a", app, "ps:remote_console", "-i", key], user.env,
        b'IO.puts("on " <> Atom.to_string(node()) <> " serving " <> Hello.marker())', expect)
    assert expect in shown, shown.decode(errors="replace")
    # The node is APP@<the replica's address on the app's network> (issue 17).
    assert re.search(rf"on {re.escape(app)}@\d+\.\d+\.\d+\.\d+ serving v1".encode(), shown), \
        shown.decode(errors="replace")
    # the console has gone; the app node is still up and serving
    assert fetch(server, app).text.startswith("Hello from Elixir v1")

    plain = new_app(server, tmp_path / "other", "procfile", "noiex")
    other_key = str(_with_key(plain[0]))
    plain[0].push()
    none = plain[0].shipway("-a", plain[1], "ps:remote_console", "-i", other_key, check=False)
    assert none.returncode != 0 and "no Elixir release" in none.stderr
