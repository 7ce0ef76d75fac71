"""Finding 6 of issue 14: tenants shared Docker's default bridge, with
inter-container traffic on, so one tenant's replica could reach another's
(app port, sshd), and every port of the host.

Against a real server with two apps of two users: each app's replicas sit on
a network of their own; from inside a replica of app A, app B's replica and
a host port other than the gateway's are out of reach, while the gateway
(slugs, keys) answers and A's own replicas reach each other; builds sit on
a network with inter-container traffic off. Networks are read by inspecting
Docker; connections are only ever attempted from inside a container."""
from __future__ import annotations

import socket
import threading

import docker
import pytest

from builder.networks import app_network_name, build_network_name
from runner.gateway import bridge_gateway
from core.settings import Settings
from tests.e2e.helpers import fetch, new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]

# Run inside a replica: exit 0 if a TCP connection to HOST:PORT opens within
# 3 s, 1 if it does not.
CONNECT = ("import socket, sys\n"
           "try:\n"
           "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
           "except OSError as e:\n"
           "    print(e); sys.exit(1)\n")


def _replicas(client: docker.DockerClient, instance: str, app: str) -> list:
    return client.containers.list(filters={"label": [f"shipway.instance={instance}",
                                                     "shipway.role=run", f"shipway.app={app}"]})


def _networks(container) -> dict:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"]


def _connects(container, host: str, port: int) -> bool:
    result = container.exec_run(["python3", "-c", CONNECT, host, str(port)], user="1000:1000")
    return result.exit_code == 0


@pytest.fixture
def host_listener():
    """A TCP port of the host on the Docker bridge's gateway address, that
    accepts (and closes) connections: what the firewall must keep from
    replicas. Bound to the gateway address only, never to 0.0.0.0."""
    client = docker.from_env()
    address = bridge_gateway(client)
    sock = socket.socket()
    sock.bind((address, 0))
    sock.listen(16)
    sock.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                sock.accept()[0].close()
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield address, sock.getsockname()[1]
    stop.set()
    thread.join(2)
    sock.close()


def test_apps_and_builds_are_isolated(make_server, tmp_path, host_listener) -> None:
    server = make_server(env={"SHIPWAY_STOP_GRACE": "2"})
    settings = Settings(instance=server.instance)
    user_a, app_a = new_app(server, tmp_path / "alice", "procfile", "neta")
    user_b, app_b = new_app(server, tmp_path / "bob", "procfile", "netb")
    user_a.push()
    user_b.push()
    user_a.shipway("-a", app_a, "ps:scale", "--replicas", "2")
    client = docker.from_env()
    wait_for(lambda: len(_replicas(client, server.instance, app_a)) == 2, timeout=60)
    assert fetch(server, app_a).status_code == 200  # the router still reaches them
    assert fetch(server, app_b).status_code == 200

    # Each app on its own network, on no other.
    a1, a2 = _replicas(client, server.instance, app_a)
    (b1,) = _replicas(client, server.instance, app_b)
    net_a, net_b = app_network_name(settings, app_a), app_network_name(settings, app_b)
    for replica in (a1, a2):
        assert set(_networks(replica)) == {net_a}
    assert set(_networks(b1)) == {net_b}
    for name, app in ((net_a, app_a), (net_b, app_b)):
        network = client.networks.get(name)
        assert network.attrs["Labels"]["shipway.instance"] == server.instance
        assert network.attrs["Labels"]["shipway.app"] == app
    b_address = _networks(b1)[net_b]["IPAddress"]
    a2_address = _networks(a2)[net_a]["IPAddress"]

    # From inside A: its own replica yes; B's replica, its sshd, and a host
    # port other than the gateway's no; the gateway's port yes.
    assert _connects(a1, a2_address, 5000)
    assert not _connects(a1, b_address, 5000)
    assert not _connects(a1, b_address, 2222)
    address, port = host_listener
    assert not _connects(a1, address, port)
    assert _connects(a1, address, server.http_port)
    keys = a1.exec_run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                        f"http://{address}:{server.http_port}/keys/{app_a}?sig=x"],
                       user="1000:1000")
    assert keys.output.decode() == "403"  # the gateway answers (a bad signature)

    # Builds: the standby build container (made like any build container)
    # is on the build network alone, with inter-container traffic off.
    builds = wait_for(lambda: client.containers.list(filters={"label": [
        f"shipway.instance={server.instance}", "shipway.role=build"]}), timeout=30)
    build_net = build_network_name(settings)
    for container in builds:
        assert set(_networks(container)) == {build_net}
    options = client.networks.get(build_net).attrs["Options"]
    assert options.get("com.docker.network.bridge.enable_icc") == "false"
    assert not _connects(builds[0], b_address, 5000)
    assert not _connects(builds[0], address, server.http_port)  # nothing of the host

    # The app's network goes with the app.
    user_b.shipway("-a", app_b, "apps:destroy", "--confirm", app_b)
    wait_for(lambda: not client.networks.list(names=[net_b]), timeout=30)
