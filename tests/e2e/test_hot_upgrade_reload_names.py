"""The module-reload hot upgrade (runner/files/hot-upgrade.sh's reload
mode) writes the changed modules' names into an Erlang expression as
quoted atoms. The names come from the app's own files: run here, as the
runner runs it (Containers.run_script, as the app user), against a real
node in a container of the stack image, with names that need the escaping
or try to break out of it. Each push changes one module, so that an
injection is the whole expression's only name."""
from __future__ import annotations

import io
import tarfile
from typing import Any, Iterator

import docker
import pytest

from builder.stack import APP_UID
from core.settings import load_settings
from runner.container_spec import DIST_PORT
from runner.containers import Containers
from runner.erl_dist import Atom, NodeConnection
from tests.conftest import unique
from tests.e2e.helpers import erlang_node_port

pytestmark = [pytest.mark.docker]

COOKIE = "the-apps-cookie"
REL = "_build/prod/rel/x"
EBIN = f"{REL}/lib/x-0.1.0/ebin"
# The injections are written for a missing escape: unescaped, `'` ends
# the atom; with `'` but not `\` escaped, the name's `\` escapes the `\`
# put before its `'`, which then ends the atom. The `%` comments out the
# rest of the line, so that the expression stays valid and runs.
NAMES = ["it's", "back\\slash", "trailing\\", "with space", "'),halt().%",
         "x'],file:write_file(\"pwned\",<<>>),%",
         "x\\'],file:write_file(\"pwned\",<<>>),%"]


def _beam(conn: NodeConnection, module: str, answer: int) -> bytes:
    """A module whose v() answers `answer`, compiled by the node."""
    forms = [(Atom("attribute"), 1, Atom("module"), Atom(module)),
             (Atom("attribute"), 2, Atom("export"), [(Atom("v"), 0)]),
             (Atom("function"), 3, Atom("v"), 0,
              [(Atom("clause"), 3, [], [], [(Atom("integer"), 3, answer)])])]
    compiled = conn.call("compile", "forms", [forms], timeout=30)
    assert compiled[0] == Atom("ok"), compiled
    return compiled[2]


def _release(beams: dict[str, bytes]) -> bytes:
    """A gzipped slug of a release with these beams (the same bin/,
    start_erl.data and layout every time: only module code changes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        files = {f"{REL}/bin/x": (b"#!/bin/sh\n", 0o755),
                 f"{REL}/releases/start_erl.data": (b"14.0 0.1.0\n", 0o644),
                 f"{REL}/releases/0.1.0/x.rel": (b"", 0o644),
                 **{f"{EBIN}/{name}.beam": (data, 0o644) for name, data in beams.items()}}
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.uid, info.gid = len(data), mode, APP_UID, APP_UID
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def replica(stack_image: str) -> Iterator[tuple[str, int]]:
    """(container id, its node's 127.0.0.1 port): a node running as the app
    user in /tmp, with /shipway/env naming it, the release's ebin on its
    code path."""
    client = docker.from_env()
    label = {"shipway.test": unique("reload-names")}
    script = ('set -e; ip=$(hostname -i | cut -d" " -f1); mkdir -p /shipway /app/' + EBIN
              + f'; printf "RELEASE_NODE=app@%s\\nRELEASE_COOKIE={COOKIE}\\n" "$ip" > /shipway/env'
              + f"; chown -R {APP_UID}:{APP_UID} /shipway /workspace/app; cd /tmp"
              + f"; exec setpriv --reuid={APP_UID} --regid={APP_UID} --clear-groups env HOME=/app"
              + f' erl -noshell -name "app@$ip" -setcookie {COOKIE} -kernel inet_dist_listen_min {DIST_PORT}'
              + f" inet_dist_listen_max {DIST_PORT} -pa /app/{EBIN}")
    container = client.containers.run(stack_image, ["bash", "-c", script], detach=True, labels=label,
                                      user="0", ports={f"{DIST_PORT}/tcp": ("127.0.0.1", None)})
    try:
        yield container.id, erlang_node_port(container, COOKIE)
    finally:
        container.remove(force=True, v=True)
        client.close()


@pytest.fixture(scope="module")
def pushes(replica: tuple[str, int]) -> Iterator[Any]:
    """push(name): a reload of the slug that changes module `name` (v() 1
    to 2) on top of the previous pushes; (exit status, lines, the names
    pushed so far)."""
    container_id, port = replica
    with NodeConnection("127.0.0.1", port, COOKIE, timeout=30) as conn:
        old = {name: _beam(conn, name, 1) for name in NAMES}
        new = {name: _beam(conn, name, 2) for name in NAMES}
        assert conn.call("file", "write_file", ["/tmp/rel.tgz", _release(old)]) == Atom("ok")
        assert conn.call("erl_tar", "extract", ["/tmp/rel.tgz", [Atom("compressed"), (Atom("cwd"), "/app")]]) \
            == Atom("ok")
        # Running v1 of every module: the push replaces loaded code.
        assert [conn.call(Atom(name), "v", []) for name in NAMES] == [1] * len(NAMES)
    client = docker.from_env()
    runner = Containers(load_settings({}, environ={})[0], client=client)
    done: dict[str, bytes] = {}

    def push(name: str) -> tuple[int, list[str], set[str]]:
        done[name] = new[name]
        slug = f"/tmp/slug-{len(done)}.tgz"
        with NodeConnection("127.0.0.1", port, COOKIE) as conn:
            assert conn.call("file", "write_file", [slug, _release({**old, **done})]) == Atom("ok")
        code, lines = runner.run_script(container_id, "hot-upgrade.sh",
                                        [str(len(done) + 1), "reload", f"file://{slug}"], timeout=60)
        return code, lines, set(done)

    try:
        yield push
    finally:
        client.close()


@pytest.mark.parametrize("name", NAMES)
def test_a_changed_modules_name_is_loaded_as_itself(name: str, replica: tuple[str, int], pushes: Any) -> None:
    code, lines, pushed = pushes(name)
    with NodeConnection("127.0.0.1", replica[1], COOKIE) as conn:
        # No code of the name's ran (the node's directory is /tmp).
        assert conn.call("filelib", "is_file", ["/tmp/pwned"]) == Atom("false"), lines
        assert code == 0 and "loaded 1 changed module(s)" in lines[-1], lines
        # That module runs its new code; those not pushed yet, their old.
        assert conn.call(Atom(name), "v", []) == 2
        assert {n: conn.call(Atom(n), "v", []) for n in NAMES if n not in pushed} == \
            {n: 1 for n in NAMES if n not in pushed}
