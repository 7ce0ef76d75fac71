"""The stack image trusts what the host trusts: a CA made here, given to
`shipway stack:build` by SHIPWAY_EXTRA_CA, is trusted by curl, Python and
Node.js in a build container and in a container run as the app's (both from
that image), and the image's tag follows the CA set (the set and the tag alone:
tests/builder/test_stack_ca.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from builder import stack
from core.settings import Settings
from tests.builder.helpers import make_app, slug_file
from tests.builder.test_stack_ca import make_ca
from builder.docker_builder import DockerBuilder
from builder.interface import BuildRequest
from tests.conftest import ROOT, remove_docker_objects, unique

# Serves TLS on loopback with the leaf certificate, then asks it as three
# clients do with their default trust: curl (the system store), Python's
# ssl default context (SSL_CERT_FILE), Node.js (NODE_EXTRA_CA_CERTS).
CHECK = r"""
set -u
cd "$(dirname "$0")"
python3 - <<'EOF' &
import socket, ssl, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("leaf.pem", "leaf.key")
srv = socket.create_server(("127.0.0.1", 8443))
def answer(conn):
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)
            tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except Exception:
        pass
while True:
    conn, _ = srv.accept()
    threading.Thread(target=answer, args=(conn,)).start()
EOF
server=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/8443) 2>/dev/null && break; sleep 0.1; done
echo "curl: $(curl -sS https://localhost:8443/ 2>&1)"
echo "python: $(python3 -c 'import urllib.request; print(urllib.request.urlopen("https://localhost:8443/").read().decode())' 2>&1 | tail -1)"
echo "node: $(node -e 'require("https").get("https://localhost:8443/", r => { r.on("data", d => process.stdout.write(d)) }).on("error", e => console.log(e.message))' 2>&1)"
kill "$server"
"""
TRUSTED = ["curl: ok", "python: ok", "node: ok"]


@pytest.fixture(scope="module")
def extra_ca_image(tmp_path_factory: pytest.TempPathFactory, stack_image: str):
    """`shipway stack:build` with SHIPWAY_EXTRA_CA naming a CA made now: its
    image (a trust layer over the suite's base), removed at the end."""
    tmp = tmp_path_factory.mktemp("ca")
    ca, leaf, key = make_ca(tmp)
    env = {**os.environ, "SHIPWAY_EXTRA_CA": str(ca)}
    done = subprocess.run([sys.executable, "-m", "cli.main", "stack:build",
                           "--data-dir", str(tmp / "data")], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    tag = done.stdout.strip().splitlines()[-1]
    assert tag != stack_image and tag.startswith(stack_image.rsplit("-ca", 1)[0] + "-ca")
    yield tag, ca, leaf, key
    try:
        docker.from_env().images.remove(tag)
    except docker.errors.APIError:
        pass


def test_extra_ca_is_trusted_in_build_and_run_containers(extra_ca_image, tmp_path: Path) -> None:
    tag, ca, leaf, key = extra_ca_image
    files = {"Procfile": "web: true\n", "check.sh": CHECK,
             "leaf.pem": leaf.read_text(), "leaf.key": key.read_text(),
             ".buildpacks": "./bp\nprocfile\n",
             "bp/bin/detect": "#!/bin/sh\necho Check\n",
             "bp/bin/compile": "#!/bin/sh\nbash \"$1/check.sh\" > \"$1/build-trust.txt\"\n"}
    repo, sha = make_app(tmp_path, files)
    # a build container of a builder whose server has the same SHIPWAY_EXTRA_CA
    instance = unique("test")
    settings = Settings(data_dir=tmp_path / "data", instance=instance, extra_ca=str(ca),
                        build_standby_ttl=0)
    assert stack.stack_image_tag(settings) == tag
    builder = DockerBuilder(settings)
    try:
        result = builder.build(BuildRequest(app="ca", repo_path=repo, commit=sha, env={}),
                               lambda line: None)
    finally:
        builder.close()
        remove_docker_objects(instance)
    assert slug_file(result.slug_path, "build-trust.txt").splitlines() == TRUSTED
    # a container as the runner makes them: the app's user, the image's env
    client = docker.from_env()
    out = client.containers.run(
        tag, ["bash", "-c", f"mkdir -p /tmp/c && cd /tmp/c && printf %s \"$0\" > check.sh && "
              f"printf %s \"$1\" > leaf.pem && printf %s \"$2\" > leaf.key && bash check.sh",
              CHECK, leaf.read_text(), key.read_text()],
        user="1000:1000", network_mode="none", remove=True, labels={"shipway.role": "test"})
    assert out.decode().splitlines() == TRUSTED
    # and the suite's image, without that CA, does not trust it
    out = client.containers.run(
        tag.rsplit("-ca", 1)[0], ["bash", "-c", "mkdir -p /tmp/c && cd /tmp/c && printf %s \"$0\" > "
                                  "check.sh && printf %s \"$1\" > leaf.pem && printf %s \"$2\" > "
                                  "leaf.key && bash check.sh",
                                  CHECK, leaf.read_text(), key.read_text()],
        user="1000:1000", network_mode="none", remove=True)
    assert not any(line in TRUSTED for line in out.decode().splitlines())
