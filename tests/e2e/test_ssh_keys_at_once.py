"""SSH keys at once (issue 18 item 6): a replica's sshd asks Shipway for the
app's keys at each login (AuthorizedKeysCommand), so a key added works at
once through `ps:ssh` and a key removed is refused at once by the replica
itself (a direct login to its SSH port, past the git gateway's own check),
with no 60 s refresh to wait for."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import docker
import pytest

from tests.e2e.helpers import User, new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _new_key(user: User, name: str) -> Path:
    ssh_dir = user.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    key = ssh_dir / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def _direct(port: str, key: Path) -> subprocess.CompletedProcess:
    """A login straight to the replica's sshd (published on 127.0.0.1)."""
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", port, "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
         "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10", "app@127.0.0.1",
         "echo logged-in-$APP_NAME"],
        capture_output=True, text=True, timeout=60)


def test_a_key_counts_at_once_when_added_and_when_removed(make_server, tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "owner", "procfile", "keysnow")
    first = _new_key(user, "id_first")
    user.shipway("account:ssh_keys:add", f"@{first}.pub")
    user.push()
    [replica] = user.shipway_json("-a", app, "ps")["replicas"]
    client = docker.from_env()
    try:
        container = client.containers.get(replica["container_id"])
        port = container.attrs["NetworkSettings"]["Ports"]["2222/tcp"][0]["HostPort"]
        # sshd starts beside the app, not before it.
        wait_for(lambda: container.exec_run(
            ["pgrep", "-u", "1000", "-f", "sshd -f /shipway"]).exit_code == 0, timeout=30)
    finally:
        client.close()
    assert f"logged-in-{app}" in wait_for(lambda: _direct(port, first).stdout, timeout=30)

    # A key added now works at once: through ps:ssh and straight to the replica.
    second = _new_key(user, "id_second")
    added = user.shipway_json("account:ssh_keys:add", f"@{second}.pub")
    began = time.monotonic()
    via_gateway = user.shipway("-a", app, "ps:ssh", "-i", str(second), "--",
                               "echo via-gateway-$APP_NAME", check=False)
    assert f"via-gateway-{app}" in via_gateway.stdout, via_gateway.stderr
    direct = _direct(port, second)
    assert f"logged-in-{app}" in direct.stdout, direct.stderr
    assert time.monotonic() - began < 30  # no refresh period waited for

    # A key removed is refused at once by the replica's own sshd.
    key_id = str(added.get("id") or added.get("fingerprint"))
    user.shipway("account:ssh_keys:remove", key_id)
    refused = _direct(port, second)
    assert refused.returncode != 0 and "logged-in" not in refused.stdout
    assert "Permission denied" in refused.stderr, refused.stderr
    # ... while the key that stays still works.
    assert f"logged-in-{app}" in _direct(port, first).stdout

    # Fail closed: when Shipway cannot be asked (here the URL points nowhere,
    # an injected fault), no key gets in, and the refusal comes fast.
    client = docker.from_env()
    try:
        container = client.containers.get(replica["container_id"])
        broke = container.exec_run(["sh", "-c", "echo http://127.0.0.1:9/keys/x "
                                    ">/shipway/ssh/keys_url"], user="1000:1000")
        assert broke.exit_code == 0, broke.output
    finally:
        client.close()
    began = time.monotonic()
    closed = _direct(port, first)
    assert closed.returncode != 0 and "logged-in" not in closed.stdout, closed.stdout
    assert time.monotonic() - began < 20
