"""`shipway run -- CMD` (issue 18 item 2) end to end: a one-off container of
the current release with the app's config, its output printed, its exit
status the CLI's, gone afterwards; shown by `ps` while it runs; `--detach`
sends its output to the app's logs. `ps:migrate` runs MIGRATE_COMMAND."""
from __future__ import annotations

import re

import docker
import pytest

from tests.e2e.helpers import new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _oneoffs(server, app: str) -> list:
    client = docker.from_env()
    try:
        return client.containers.list(all=True, filters={"label": [
            f"shipway.instance={server.instance}", f"shipway.app={app}", "shipway.role=oneoff"]})
    finally:
        client.close()


def _anonymous_volumes() -> set[str]:
    """Docker's unnamed volumes (64 hex digits): a container's `/shipway`
    volume (its entrypoint, its env with the app's config, its host key)
    outlives the container unless it is removed with it."""
    client = docker.from_env()
    try:
        return {v.name for v in client.volumes.list() if re.fullmatch(r"[0-9a-f]{64}", v.name)}
    finally:
        client.close()


def test_run_streams_exits_with_the_status_and_leaves_nothing(make_server, tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "owner", "procfile", "oneoff",
                        env={"GREETING": "from-config"})
    user.push()
    volumes_before = _anonymous_volumes()

    ran = user.shipway("-a", app, "run", "--", "sh", "-c",
                       'echo hi; echo "$APP_NAME $GREETING"; exit 3', check=False)
    assert ran.returncode == 3, ran.stderr
    assert "hi" in ran.stdout.splitlines(), ran.stdout
    assert f"{app} from-config" in ran.stdout
    assert _oneoffs(server, app) == []  # removed afterwards
    # Only the replica runs: the one-off never joined the formation.
    assert [r["process_type"] for r in user.shipway_json("-a", app, "ps")["replicas"]] == ["web"]

    # Detached: `ps` shows it while it runs, its lines go to the logs, and it
    # is removed once it ends.
    user.shipway("-a", app, "run", "--detach", "--",
                 "sh -c 'echo detached-marker; sleep 6'")
    shown = wait_for(lambda: user.shipway_json("-a", app, "ps")["oneoffs"], timeout=30)
    assert shown[0]["process_type"] == "run" and shown[0]["version"] == 1
    assert "one-off runs:" in user.shipway("-a", app, "ps").stdout
    wait_for(lambda: "detached-marker" in user.shipway("-a", app, "logs", "-n", "200").stdout,
             timeout=30)
    wait_for(lambda: _oneoffs(server, app) == [], timeout=60)
    assert user.shipway_json("-a", app, "ps")["oneoffs"] == []

    # ps:migrate (and Gigalixir's `migrate`): the config var's command.
    user.shipway("-a", app, "config:set", "MIGRATE_COMMAND=echo migrated-$APP_VERSION")
    migrated = user.shipway("-a", app, "migrate")
    assert "migrated-v2" in migrated.stdout, migrated.stdout + migrated.stderr

    # A one-off still running goes with its app.
    user.shipway("-a", app, "run", "--detach", "--", "sleep 300")
    wait_for(lambda: user.shipway_json("-a", app, "ps")["oneoffs"], timeout=30)
    user.shipway("-a", app, "apps:destroy", "--confirm", app)
    assert _oneoffs(server, app) == []
    # Nothing of the one-offs (nor of the replicas) stays on the host's disk.
    assert _anonymous_volumes() - volumes_before == set()


def test_run_from_a_terminal_gets_a_tty_and_its_exit_status(make_server, tmp_path) -> None:
    """From a terminal, `run` starts a one-off with its SSH server and runs
    the command in it under `ssh -t` through the git gateway (as ps:ssh);
    the one-off is removed when the session ends."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    server = make_server()
    user, app = new_app(server, tmp_path / "owner", "procfile", "ttyrun")
    ssh_dir = user.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    key = ssh_dir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    user.shipway("account:ssh_keys:add", f"@{key}.pub")
    user.push()

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "-a", app, "run", "-i", str(key), "--",
         "sh -c 'test -t 0 && test -t 1 && echo has-a-tty-$APP_NAME; read line; "
         "echo got-$line; exit 5'"],
        cwd=str(ROOT), env=user.env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    sent = False
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
        if not sent and b"has-a-tty" in seen:
            os.write(master, b"typed\r")
            sent = True
    code = proc.wait(timeout=30)
    os.close(master)
    text = seen.decode("utf-8", "replace")
    assert f"has-a-tty-{app}" in text, text
    assert "got-typed" in text, text
    assert code == 5, text
    wait_for(lambda: _oneoffs(server, app) == [], timeout=30)
