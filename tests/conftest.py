"""Shared fixtures: a real `shipway server` subprocess on free loopback ports,
a real PostgreSQL server, the stack image, and Docker clean-up by label."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent

# --- issue 16 item 7: a real ACME server (pebble) for the TLS tests ---------
from tests.pebble import Pebble, pebble  # noqa: E402,F401


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run the suite with a fresh HOME, so a developer's ~/.netrc, git config
    or Shipway login (e.g. from scripts/up.sh) cannot change what git,
    requests or the CLI send."""
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Shipway Tests\n\temail = tests@shipway.invalid\n"
        "[init]\n\tdefaultBranch = main\n")
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    yield
    if saved is not None:
        os.environ["HOME"] = saved


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class ApiClient:
    """A thin requests wrapper for the REST API (Bearer auth)."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if self.api_key and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.api_key}"
        kw.setdefault("timeout", 600)
        # An explicit (no-op) auth: otherwise requests takes ~/.netrc's entry
        # for 127.0.0.1 (which `shipway login` writes) over our header.
        kw.setdefault("auth", lambda r: r)
        return requests.request(method, self.base_url + path, headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)


class ShipwayServer:
    """One `python -m server` process with its own data dir and ports."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None,
                 database_url: str | None = None, instance_from_data_dir: bool = False) -> None:
        self.data_dir = data_dir
        self.http_port = free_port()
        self.ssh_port = free_port()
        self.router_port = free_port()
        self.https_port = free_port()  # issue 16: the router's TLS port (never a shared 8443)
        # issue 15 item 8: instance_from_data_dir leaves SHIPWAY_INSTANCE
        # unset, so the server takes its data dir's own (read after start).
        self.instance_from_data_dir = instance_from_data_dir
        self.instance = "" if instance_from_data_dir else unique("test")
        self.database_url = database_url
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("SHIPWAY_INSTANCE", None)
        if not self.instance_from_data_dir:
            env["SHIPWAY_INSTANCE"] = self.instance
        env.update({
            "PYTHONUNBUFFERED": "1",
            # issue 14: every test client is 127.0.0.1, so one address stands
            # for many clients here; tests of that throttle set their own.
            "SHIPWAY_LOGIN_THROTTLE_ADDRESS_FAILURES": "1000000",
            "SHIPWAY_HTTPS_PORT": str(self.https_port),  # issue 16
        })
        if self.database_url:
            env["SHIPWAY_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60) -> "ShipwayServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--data-dir", str(self.data_dir),
             "--http-port", str(self.http_port), "--ssh-port", str(self.ssh_port),
             "--router-port", str(self.router_port)],
            cwd=str(ROOT), env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"shipway server exited:\n{self.log()}")
            try:
                if requests.get(self.url + "/api/health", timeout=2).status_code == 200:
                    if self.instance_from_data_dir:
                        from core.instance import read_instance

                        self.instance = read_instance(self.data_dir) or ""
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"shipway server did not answer:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def api(self, api_key: str | None = None) -> ApiClient:
        return ApiClient(self.url, api_key)

    def signup(self, email: str | None = None, password: str = "correct horse battery") -> "TestUser":
        email = email or f"{unique('u')}@example.com"
        r = self.api().post("/api/users", json={"email": email, "password": password})
        assert r.status_code == 201, r.text
        return TestUser(email=email, password=password, api_key=r.json()["api_key"], server=self)

    def cleanup_docker(self) -> None:
        if self.instance_from_data_dir:  # what the server took (never "default")
            from core.instance import read_instance

            self.instance = read_instance(self.data_dir) or ""
        if self.instance and self.instance != "default":
            remove_docker_objects(self.instance)


class TestUser:
    __test__ = False

    def __init__(self, email: str, password: str, api_key: str, server: ShipwayServer) -> None:
        self.email, self.password, self.api_key, self.server = email, password, api_key, server

    @property
    def api(self) -> ApiClient:
        return self.server.api(self.api_key)


def remove_docker_objects(instance: str) -> None:
    """Remove every container and volume labelled with this test instance."""
    try:
        import docker
    except ImportError:
        return
    try:
        client = docker.from_env()
    except Exception:
        return
    label = f"shipway.instance={instance}"
    for c in client.containers.list(all=True, filters={"label": label}):
        try:
            c.remove(force=True, v=True)
        except Exception:
            pass
    for v in client.volumes.list(filters={"label": label}):
        try:
            v.remove(force=True)
        except Exception:
            pass
    # issue 14: the instance's networks and its host firewall chain.
    for n in client.networks.list(filters={"label": label}):
        try:
            n.remove()
        except Exception:
            pass
    try:
        from builder.networks import remove_firewall
        from core.settings import Settings

        remove_firewall(Settings(instance=instance))
    except Exception:
        pass
    try:  # the instance's build disks (loop devices; their volumes went above)
        listed = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
        for line in listed.splitlines():
            if f"/build-disks/{instance}-" in line:
                subprocess.run(["losetup", "-d", line.split(":", 1)[0]], capture_output=True)
    except Exception:
        pass


# Issue 15 item 7: outside tests/e2e/ a test server builds and runs in memory
# (runner: memory, builder: memory), so those tests need no Docker;
# tests/e2e/conftest.py gives its tests the same fixtures on Docker.
MEMORY_BACKENDS = {"SHIPWAY_RUNNER": "memory", "SHIPWAY_BUILDER": "memory"}


def servers_made(tmp_path_factory: pytest.TempPathFactory,
                 backends: dict[str, str]) -> Iterator[Any]:
    """Factory: start fresh servers (each its own data dir); all stopped and
    their containers removed at teardown. A test's own env wins over backends."""
    started: list[ShipwayServer] = []

    def make(**kw: Any) -> ShipwayServer:
        kw["env"] = {**backends, **(kw.get("env") or {})}
        server = ShipwayServer(tmp_path_factory.mktemp("shipway"), **kw)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()
        server.cleanup_docker()
        _stop_nginx(server.data_dir)


def shared_server(tmp_path_factory: pytest.TempPathFactory,
                  backends: dict[str, str]) -> Iterator[ShipwayServer]:
    """One server shared by the tests that only need the API (each test makes
    its own users and apps, so they do not interfere)."""
    server = ShipwayServer(tmp_path_factory.mktemp("shipway-shared"), env=backends).start()
    yield server
    server.stop()
    server.cleanup_docker()
    _stop_nginx(server.data_dir)


@pytest.fixture
def make_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from servers_made(tmp_path_factory, MEMORY_BACKENDS)


@pytest.fixture(scope="session")
def shipway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    yield from shared_server(tmp_path_factory, MEMORY_BACKENDS)


def _stop_nginx(data_dir: Path) -> None:
    """The router leaves nginx running across server crashes; tests stop it."""
    for pid_file in data_dir.glob("**/nginx.pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGQUIT)
        except (OSError, ValueError):
            pass
    # Issue 16 (router): the HAProxy router's master (SIGTERM stops its
    # workers) and its handover sockets' directory (in /run when root).
    from router.haproxy_process import handover_dir

    for pid_file in data_dir.glob("**/haproxy.pid"):
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            pass
        shutil.rmtree(handover_dir(str(pid_file.parent), shared_with_workers=os.geteuid() == 0),
                      ignore_errors=True)


@pytest.fixture
def user(shipway_server: ShipwayServer) -> TestUser:
    return shipway_server.signup()


# --- PostgreSQL ---------------------------------------------------------------

def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"PostgreSQL's {name} is not installed (scripts/install.sh installs it)")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server on a free loopback port for this test session,
    or the one named by SHIPWAY_TEST_POSTGRES_URL."""
    given = os.environ.get("SHIPWAY_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    base = tmp_path_factory.mktemp("pg")
    data = base / "data"
    port = free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        run_as = ["runuser", "-u", "postgres", "--"]
        # postgres cannot enter root's 0700 pytest temp dir: use one under /tmp.
        base = Path(tempfile.mkdtemp(prefix="shipway-pg-"))
        data = base / "data"
        shutil.chown(base, "postgres")
    subprocess.run(run_as + [_pg_bin("initdb"), "-D", str(data), "-U", "shipway",
                             "--auth=trust", "-E", "UTF8"], check=True,
                   capture_output=True)
    subprocess.run(run_as + [_pg_bin("pg_ctl"), "-D", str(data), "-w", "-l", str(base / "pg.log"),
                             "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
                             "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://shipway@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(run_as + [_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)
        if run_as:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both databases, for tests that must pass on each. PostgreSQL tests get a
    fresh database each so they start empty, like SQLite's new file."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shipway.db'}"
    base = request.getfixturevalue("postgres_url")
    import sqlalchemy as sa

    name = unique("db")
    engine = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://"),
                              isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    request.addfinalizer(lambda: _drop_database(base, name))
    return base.rsplit("/", 1)[0] + f"/{name}"


def _drop_database(base: str, name: str) -> None:
    """Drop a test's database at its end: hundreds of them made the session's
    PostgreSQL shutdown checkpoint take minutes."""
    import sqlalchemy as sa

    engine = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://"),
                              isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except sa.exc.SQLAlchemyError:
        pass  # best effort: the server is thrown away at the session's end
    finally:
        engine.dispose()


# --- the stack image ----------------------------------------------------------

@pytest.fixture(scope="session")
def stack_image() -> str:
    """The stack image, built on first need (kept between runs)."""
    from builder.stack import ensure_stack_image
    from core.settings import load_settings

    settings, _ = load_settings({}, environ={})
    return ensure_stack_image(settings, output=lambda line: print(line, flush=True))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto in server mode) on 127.0.0.1."""
    port = free_port()
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                requests.get(url, timeout=1)
                break
            except requests.RequestException:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
