"""runner/erl_dist.py against a real node (the stack image's Erlang, named
and listening as a replica's node does, on its fixed distribution port):
Shipway calls functions in it with the app's cookie, as a hidden node; a
wrong cookie is refused; the hot upgrade's script and its call over the
distribution leave nothing behind where they should not."""
from __future__ import annotations

import io
import tarfile
import time

import docker
import pytest

from core.specs import ReleaseSpec
from runner.container_spec import DIST_PORT, runner_file
from runner.containers import Replica
from runner.erl_dist import Atom, ErlDistError, NodeConnection
from runner.hot_upgrade import ANSWER_MARGIN, HotUpgradeMixin, UpgradePlan
from tests.conftest import unique
from tests.e2e.helpers import erlang_node_port

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
        # Reached on its port published on 127.0.0.1, as the runner does;
        # the address is only the node's name.
        port = erlang_node_port(container, COOKIE)
        address = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        yield port, f"app@{address}"
    finally:
        container.remove(force=True, v=True)
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


@pytest.fixture
def release_node(stack_image: str):
    """(port, container hostname) of a node with SASL (release_handler) and
    an /app/<Rel> with releases/RELEASES, as hot-upgrade.exprs expects."""
    client = docker.from_env()
    label = {"shipway.test": unique("erldist-rel")}
    network = client.networks.create(unique("erldist"), driver="bridge", labels=label)
    container = client.containers.run(
        stack_image, ["bash", "-c", "mkdir -p /app/_build/prod/rel/x/releases "
                                    "&& touch /app/_build/prod/rel/x/releases/RELEASES "
                                    '&& exec erl -noshell -boot start_sasl -name "app@$(hostname -i | cut -d" " -f1)" '
                                    f"-setcookie {COOKIE} -kernel inet_dist_listen_min {DIST_PORT} "
                                    f"inet_dist_listen_max {DIST_PORT}"],
        detach=True, labels=label, network=network.name, user="0",
        ports={f"{DIST_PORT}/tcp": ("127.0.0.1", None)})
    try:
        port = erlang_node_port(container, COOKIE)
        yield port, container.attrs["Config"]["Hostname"]
    finally:
        container.remove(force=True, v=True)
        network.remove()


def test_the_upgrade_script_writes_no_member_outside_the_release(release_node) -> None:
    """runner/files/hot-upgrade.exprs run as the hot upgrade runs it: an
    artefact member whose name climbs out (lib/../../..) is not written
    anywhere, and the artefact is deleted once read."""
    port, hostname = release_node
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in [("_build/prod/rel/x/releases/0.2.0/relup", b"not a relup"),
                           ("_build/prod/rel/x/lib/" + "../" * 12 + "tmp/evil", b"evil")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with NodeConnection("127.0.0.1", port, COOKIE, timeout=60) as conn:
        assert conn.call("file", "write_file", ["/tmp/up.tar", buf.getvalue()]) == Atom("ok")
        assert conn.call("file", "write_file", ["/tmp/up.exprs", runner_file("hot-upgrade.exprs")]) == Atom("ok")
        bindings = {"Deadline": int((time.time() + 60) * 1000), "Rel": "_build/prod/rel/x",
                    "Stagger": Atom("false"), "TarFile": "/tmp/up.tar", "Targets": [hostname],
                    "Version": "2", "Vsn": "0.2.0"}
        answer = conn.call("file", "script", ["/tmp/up.exprs", [(Atom(k), v) for k, v in sorted(bindings.items())]])
        # The stage failed (the relup is not one), as it should; what
        # matters is what it wrote before.
        assert answer[0] == Atom("ok") and f"{hostname}|1|staging failed" in answer[1], str(answer)[:400]
        assert conn.call("filelib", "is_regular", ["/tmp/evil"]) == Atom("false")
        assert conn.call("filelib", "is_regular", ["/tmp/up.tar"]) == Atom("false")


def test_a_call_that_timed_out_still_has_its_files_removed(node) -> None:
    """The hot upgrade over the distribution (HotUpgradeMixin.
    _over_distribution, as the runner calls it) removes the files it wrote
    on the node even when its call gave up: the script here outlives the
    call's time (the failed call closed its connection: a new one is
    made). The script records the files it saw, which proves they were
    there while it ran."""
    port, _name = node
    conductor = Replica(id="c0", name="web-1", app="a", version=1, process_type="web", state="running",
                        host_port=None, created=0.0, dist_port=port)
    spec = ReleaseSpec(app="a", version=2, slug_key="k", process_types={"web": "x"},
                       env={"RELEASE_COOKIE": COOKIE}, formation={"web": 1})
    exprs = (b'ok = file:write_file("/tmp/seen", io_lib:format("~p.", '
             b'[filelib:wildcard("/app/.shipway-upgrade.*")])),\n'
             b"timer:sleep(60000).\n")
    # The call waits ANSWER_MARGIN past the deadline: 2 s in all here.
    deadline_ms = int((time.time() - ANSWER_MARGIN + 2) * 1000)
    code, lines = HotUpgradeMixin()._over_distribution(
        conductor, [conductor], spec, UpgradePlan(rel="_build/prod/rel/x", vsn="0.2.0"), b"artefact",
        exprs, "false", deadline_ms)
    assert code == 1 and "did not complete" in lines[-1], lines
    with NodeConnection("127.0.0.1", port, COOKIE) as conn:
        seen = conn.call("file", "consult", ["/tmp/seen"])
        assert seen[0] == Atom("ok") and sorted(p.rsplit(".", 1)[1] for p in seen[1][0]) == ["exprs", "tar"], seen
        assert conn.call("filelib", "wildcard", ["/app/.shipway-upgrade.*"]) == []
