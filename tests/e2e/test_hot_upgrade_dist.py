"""runner/erl_dist.py against a real node (the stack image's Erlang, named
and listening as a replica's node does, on its fixed distribution port):
Shipway calls functions in it with the app's cookie, as a hidden node; a
wrong cookie is refused."""
from __future__ import annotations

import time

import docker
import pytest

from runner.erl_dist import Atom, ErlDistError, NodeConnection
from runner.container_spec import DIST_PORT
from tests.conftest import unique

pytestmark = [pytest.mark.docker]

COOKIE = "the-apps-cookie"


@pytest.fixture
def node(stack_image: str):
    """(its 127.0.0.1 port, node name) of a node in a container on a network of its own."""
    client = docker.from_env()
    label = {"shipway.test": unique("erldist")}
    network = client.networks.create(unique("erldist"), driver="bridge", labels=label)
    container = client.containers.run(
        stack_image, ["bash", "-c", 'exec erl -noshell -name "app@$(hostname -i | cut -d" " -f1)" '
                                    f"-setcookie {COOKIE} -kernel inet_dist_listen_min {DIST_PORT} "
                                    f"inet_dist_listen_max {DIST_PORT}"],
        detach=True, labels=label, network=network.name,
        ports={f"{DIST_PORT}/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        # Reached on its port published on 127.0.0.1, as the runner does;
        # the address is only the node's name.
        port = int(container.attrs["NetworkSettings"]["Ports"][f"{DIST_PORT}/tcp"][0]["HostPort"])
        deadline = time.monotonic() + 30
        while True:  # up once its distribution answers
            try:
                NodeConnection("127.0.0.1", port, COOKIE).close()
                break
            except (OSError, ErlDistError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield port, f"app@{address}"
    finally:
        container.remove(force=True)
        network.remove()


def test_calls_into_a_running_node_with_the_apps_cookie(node) -> None:
    port, name = node
    with NodeConnection("127.0.0.1", port, COOKIE) as conn:
        assert conn.call("erlang", "node", []) == Atom(name)
        # Hidden: the node lists no visible peer.
        assert conn.call("erlang", "nodes", []) == []
        # What the hot upgrade does: a file written, then evaluated with
        # bindings (strings, atoms, a binary), its value answered.
        assert conn.call("file", "write_file", ["/tmp/t.exprs",
                                                b'{Vsn, byte_size(Tar), Stagger}.\n']) == Atom("ok")
        answer = conn.call("file", "script", ["/tmp/t.exprs", [(Atom("Stagger"), Atom("false")),
                                                              (Atom("Tar"), b"\0" * 200_000),
                                                              (Atom("Vsn"), "0.2.0")]])
        assert answer == (Atom("ok"), ("0.2.0", 200_000, Atom("false"))), str(answer)[:300]
        assert conn.call("no_such_module", "f", [])[0] == Atom("badrpc")


def test_a_wrong_cookie_is_refused(node) -> None:
    port, _name = node
    with pytest.raises(ErlDistError, match="cookie"):
        NodeConnection("127.0.0.1", port, "not-the-cookie")


def test_the_evaluated_codes_io_is_answered(node) -> None:
    """Shipway is the call's group leader: what the code prints (a
    code_change/3 logging) is acknowledged at once, input is not supported;
    neither waits for the call's deadline."""
    port, _name = node
    with NodeConnection("127.0.0.1", port, COOKIE) as conn:
        assert conn.call("io", "put_chars", ["upgraded\n"], timeout=5) == Atom("ok")
        assert conn.call("io", "format", ["~p~n", [[1, 2]]], timeout=5) == Atom("ok")
        assert conn.call("io", "get_line", ["? "], timeout=5) == (Atom("error"), Atom("enotsup"))
