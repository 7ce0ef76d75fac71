"""Issue 14, networks: a replica could send to the link-local range
(169.254.0.0/16), where a cloud host's metadata service hands out the
host's credentials.

Against a real server: from inside a replica, a connection to
169.254.169.254:80 is refused at once by this server's own chain, jumped to
from Docker's DOCKER-USER (its counter shows the packet was rejected on
the host: nothing left the machine); the chain goes with the server."""
from __future__ import annotations

import subprocess

import docker
import pytest

from builder.networks import forward_chain_name
from core.settings import Settings
from tests.e2e.helpers import new_app

pytestmark = [pytest.mark.slow, pytest.mark.docker]

# Run inside a replica: print how the connect ended and how long it took.
CONNECT = ("import socket, time\n"
           "start = time.monotonic()\n"
           "try:\n"
           "    socket.create_connection(('169.254.169.254', 80), timeout=2).close()\n"
           "    said = 'connected'\n"
           "except OSError as e:\n"
           "    said = type(e).__name__\n"
           "print(said, round(time.monotonic() - start, 2))\n")


def _rejected(chain: str) -> int:
    """Packets the chain's rules rejected so far."""
    listing = subprocess.run(["iptables", "-w", "-n", "-v", "-x", "-L", chain],
                             capture_output=True, text=True, check=True).stdout
    return sum(int(line.split()[0]) for line in listing.splitlines()
               if "REJECT" in line and "169.254.0.0/16" in line)


def test_a_replica_cannot_reach_the_metadata_address(make_server, tmp_path) -> None:
    server = make_server(env={"SHIPWAY_STOP_GRACE": "2"})
    user, app = new_app(server, tmp_path / "home", "procfile", "meta")
    user.push()
    chain = forward_chain_name(Settings(instance=server.instance))
    [replica] = docker.from_env().containers.list(filters={"label": [
        f"shipway.instance={server.instance}", "shipway.role=run", f"shipway.app={app}"]})
    before = _rejected(chain)
    said, took = replica.exec_run(["python3", "-c", CONNECT],
                                  user="1000:1000").output.decode().split()
    assert said == "ConnectionRefusedError" and float(took) < 2, (said, took)
    assert _rejected(chain) > before  # refused by this server's rule, on the host
    server.stop()
    from builder.networks import remove_firewall

    remove_firewall(Settings(instance=server.instance))
    assert subprocess.run(["iptables", "-w", "-n", "-L", chain],
                          capture_output=True).returncode != 0  # removed with the rest
