"""Finding 8: an open `ps:ssh` session of a collaborator who was removed
kept running 80-100 s. Now the session ends at once when the collaborator
is removed from the app, and when the SSH key it was opened with is removed
(real server, Docker, ssh and a deployed app)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.helpers import User, new_app
from tests.e2e.test_ps_ssh import _with_key

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _open_session(user: User, app: str, key: Path) -> subprocess.Popen:
    """A running ps:ssh session that prints a line, then stays (5 minutes)."""
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "-a", app, "ps:ssh", "-i",
                             str(key), "--", "echo session-open; sleep 300"],
                            cwd=str(ROOT), env=user.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the command runs in the replica
    assert line.strip() == "session-open", (line, proc.poll())
    return proc


def _seconds_to_exit(proc: subprocess.Popen, limit: float = 20) -> float:
    start = time.monotonic()
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return float("inf")
    return time.monotonic() - start


def test_removed_collaborator_and_removed_key_lose_open_sessions(make_server, stack_image,
                                                                  tmp_path) -> None:
    server = make_server()
    owner, app = new_app(server, tmp_path / "owner", "procfile", "revoke")
    people = {}
    for name in ("alice", "bob"):
        person = User(server, tmp_path / name)
        person.shipway("signup", "--email", f"{name}-{app}@example.com",
                       "--password", "correct horse battery")
        people[name] = (person, _with_key(person))
        owner.shipway("-a", app, "access:add", f"{name}-{app}@example.com")
    owner.push()  # the replica reads the app's keys (both collaborators') as it starts

    # Collaborator removed: the open session ends within a couple of seconds.
    alice, alice_key = people["alice"]
    session = _open_session(alice, app, alice_key)
    time.sleep(1)
    assert session.poll() is None  # still running before the removal
    owner.shipway("-a", app, "access:remove", f"alice-{app}@example.com")
    took = _seconds_to_exit(session)  # counted from the removal's answer
    assert took < 3, f"the removed collaborator's session ran on ({took:.1f} s)"
    assert session.returncode != 0
    refused = alice.shipway("-a", app, "ps:ssh", "-i", str(alice_key), "--", "true", check=False)
    assert refused.returncode != 0

    # The key a session was opened with is removed: the session ends too.
    bob, bob_key = people["bob"]
    session = _open_session(bob, app, bob_key)
    time.sleep(1)
    assert session.poll() is None
    [key_id] = [k["id"] for k in bob.shipway_json("account:ssh_keys")]
    bob.shipway("account:ssh_keys:remove", str(key_id))
    took = _seconds_to_exit(session)
    assert took < 3, f"a session of a removed key ran on ({took:.1f} s)"
    assert session.returncode != 0
