"""A runner rig: the real controller (SQLite), local slug store, managed
nginx and Docker runner in this process, the container gateway listener in a
child process, and slugs made here from a tiny Python web app."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, Iterator

import docker
import pytest
import requests

from controller.deploys import Deployer, DesiredState
from controller.models import App, Release
from controller.store import open_controller
from router.nginx import NginxRouter
from runner.docker_runner import DockerRunner
from runner.gateway import bridge_gateway
from core.settings import load_settings
from storage.factory import make_slug_store
from tests.conftest import ROOT, free_port, remove_docker_objects, unique

# A web app that says which release and greeting it runs with.
APP_PY = b'''import os, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s %s %s" % (os.environ.get("APP_VERSION"), os.environ.get("GREETING", "-"),
                              os.environ.get("HOSTNAME"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
print("booting", os.environ.get("APP_VERSION"), flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
'''

WEB = {"web": "python3 app.py"}


class Rig:
    def __init__(self, base: Path, image: str) -> None:
        self.base = base
        self.instance = unique("rtest")
        self.env = {
            "SHIPWAY_DATA_DIR": str(base / "data"),
            "SHIPWAY_INSTANCE": self.instance,
            "SHIPWAY_HTTP_PORT": str(free_port()),
            "SHIPWAY_ROUTER_PORT": str(free_port()),
            "SHIPWAY_STACK_IMAGE": image,
            "SHIPWAY_STOP_GRACE": "2",
            "SHIPWAY_HEALTH_TIMEOUT": "30",
        }
        self.settings, _ = load_settings(environ=self.env)
        self.controller = open_controller(self.settings)
        self.slugs = make_slug_store(self.settings)
        self.router = NginxRouter(self.settings)
        self.runner = self.new_runner()
        self.user, _ = self.controller.signup(f"{unique('u')}@example.com", "correct horse battery")
        self.gateway: subprocess.Popen | None = None

    def new_runner(self) -> DockerRunner:
        runner = DockerRunner(self.settings, slugs=self.slugs, router=self.router,
                              state=DesiredState(self.settings, self.controller))
        self.controller.set_deployer(Deployer(self.settings, controller=self.controller,
                                              runner=runner))
        return runner

    def start_gateway(self) -> None:
        env = dict(os.environ, **self.env)
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "tests.runner.gateway_server"], cwd=str(ROOT), env=env,
            stdout=open(self.base / "gateway.log", "ab"), stderr=subprocess.STDOUT)
        client = docker.from_env()
        host = bridge_gateway(client)
        client.close()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection((host, self.settings.http_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError((self.base / "gateway.log").read_text())

    def release(self, app: App, process_types: dict[str, str] | None = None,
                files: dict[str, bytes] | None = None, sized: bool = False) -> Release:
        """Store a slug made of `files` and make a release of it; `sized`
        records its unpacked size as a build does (older slugs have none)."""
        files = files if files is not None else {"app.py": APP_PY}
        process_types = process_types or WEB
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            procfile = "".join(f"{k}: {v}\n" for k, v in process_types.items()).encode()
            for name, data in {**files, "Procfile": procfile}.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        path = self.base / f"{unique('slug')}.tar.gz"
        path.write_bytes(buf.getvalue())
        key = f"{app.name}/{path.name}"
        self.slugs.put(key, path)
        packed = buf.getvalue()
        slug = self.controller.record_slug(
            app, key, "0" * 64, len(packed), "c" * 40, process_types, [],
            unpacked_size=int.from_bytes(packed[-4:], "little") if sized else None)
        return self.controller.create_release(app, slug, "test", self.user.email)

    def deploy(self, app: App, release: Release, lines: list[str] | None = None) -> Release:
        out = lines if lines is not None else []
        return self.controller.deploy_release(app, release, out.append)

    def get(self, app: App | str, path: str = "/") -> requests.Response:
        name = app if isinstance(app, str) else app.name
        return requests.get(f"http://127.0.0.1:{self.settings.router_port}{path}",
                            headers={"Host": f"{name}.{self.settings.base_domain}"}, timeout=10)

    def close(self) -> None:
        self.runner.stop()
        remove_docker_objects(self.instance)
        self.router.stop()
        if self.gateway is not None:
            self.gateway.terminate()
            self.gateway.wait(10)
        self.controller.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, stack_image: str) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("runner"), stack_image)
    try:
        rig.start_gateway()
        rig.router.start()
        rig.runner.start()
        yield rig
    finally:
        rig.close()


def wait_for(predicate: Any, timeout: float = 60, interval: float = 0.5) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {predicate}")
