"""One replica's life in Docker: create it locked down, hand it its files,
start it, find its port, wait for it to answer, read its logs, stop it.

Run containers are isolated: the stack image's unprivileged user, no Linux
capabilities, no privilege escalation, memory/CPU/pids limits, nothing of the
host mounted (the slug arrives over HTTP through a signed URL), their
ports are published on 127.0.0.1 only, each app's replicas sit on a
network of their own (builder/networks.py), and what they write is bounded
(a read-only root, fixed-size tmpfs: runner/run_disk.py).
"""
from __future__ import annotations

import http.client
import io
import os
import re
import secrets
import shlex
import tarfile
import time
from importlib import resources
from typing import Any, Callable

import attrs
import docker
import docker.errors

from builder.networks import ensure_app_network
from builder.stack import APP_UID
from core.specs import HealthCheck, ReleaseSpec, size_limits
from runner.run_disk import FILES_IN, check_slug_fits, run_storage
from core.settings import Settings

WEB = "web"
CONTAINER_PORT = 5000  # PORT inside every container (as on Heroku)
SSH_PORT = 2222  # the replica's sshd (non-root, so above 1024)
ROLE = "run"
# The app's SSH host key travels in ReleaseSpec.env under this name, from the
# controller to here, and goes into the container as a file of its own.
HOST_KEY_VAR = "SHIPWAY_SSH_HOST_KEY"
HOST_KEY_LABEL = "shipway.ssh-host-key"  # "app" on replicas that were given it
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_NAME_SAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


class Unhealthy(Exception):
    """A new replica did not become healthy; `log_tail` says why."""

    def __init__(self, message: str, log_tail: list[str]) -> None:
        super().__init__(message)
        self.log_tail = log_tail


# A replica being stopped is renamed to end with this before it is: a server
# killed meanwhile must not adopt it at its next start (it may be halfway
# through its SIGTERM grace) in place of the replica that replaced it.
STOPPING_SUFFIX = "-stopping"
SIZE_LABEL = "shipway.size"  # "" for the server's defaults, else the size


def size_label(size: float | None) -> str:
    return "" if size is None else repr(float(size))


ERROR_WAIT = 1.0  # seconds after a health check's error answer (Dokku waits 5)


@attrs.frozen
class Replica:
    """A run container as the Docker list shows it."""

    id: str
    name: str
    app: str
    version: int
    process_type: str
    state: str  # Docker's: created, running, exited, dead, ...
    host_port: int | None
    created: float  # epoch seconds
    ssh_port: int | None = None  # its sshd's 127.0.0.1 port (as listed)
    # Whether its sshd presents the app's own host key (replicas started by
    # Shipway before host keys existed present one of their own).
    app_host_key: bool = True
    # Its SIZE_LABEL (the app's size when it started); None on a container
    # of an older Shipway, which is taken to have the size asked for.
    size_label: str | None = None

    def sized(self, size: float | None) -> bool:
        """Whether it was started with replica size `size`."""
        return self.size_label is None or self.size_label == size_label(size)

    @property
    def stopping(self) -> bool:
        """Being retired (renamed so by `mark_stopping`): never adopted."""
        return self.name.endswith(STOPPING_SUFFIX)

    @property
    def is_web(self) -> bool:
        return self.process_type == WEB


def labels(settings: Settings, app: str | None = None) -> list[str]:
    """Docker label filters selecting this instance's run containers."""
    found = [f"shipway.instance={settings.instance}", f"shipway.role={ROLE}"]
    if app is not None:
        found.append(f"shipway.app={app}")
    return found


def env_file(env: dict[str, str]) -> bytes:
    """Shell `KEY='value'` lines the entrypoint sources (with `set -a`).
    Values are quoted by shlex, so any byte string is passed through intact."""
    lines = []
    for key, value in env.items():
        if not _ENV_NAME.match(key):
            raise ValueError(f"invalid environment variable name {key!r}")
        lines.append(f"{key}={shlex.quote(str(value))}\n")
    return "".join(lines).encode()


def _archive(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A tar of root-owned files for `put_archive` into FILES_IN: the app
    can read them, never change them nor write beside them (the volume is
    on the host's disk, so no app write may land there)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), mode, 0, 0
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def replica_limits(settings: Settings, spec: ReleaseSpec, host_cpus: int) -> tuple[int, float]:
    """A replica's memory limit in bytes (0: none) and its CPUs, before any
    tmpfs (core.specs.size_limits)."""
    return size_limits(settings, spec.size, host_cpus)


def entrypoint_script() -> bytes:
    return runner_file("entrypoint.sh")


def runner_file(name: str) -> bytes:
    return resources.files("runner").joinpath(f"files/{name}").read_bytes()


class Containers:
    """The Docker calls the runner makes, in one place."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.client = client or docker.from_env(timeout=120, max_pool_size=32)
        self._host_cpus: int | None = None

    @property
    def host_cpus(self) -> int:
        """The engine's CPUs (its limit for a container's), asked once."""
        if self._host_cpus is None:
            self._host_cpus = int(self.client.info().get("NCPU") or os.cpu_count() or 1)
        return self._host_cpus

    # --- listing -------------------------------------------------------------
    def list(self, app: str | None = None) -> list[Replica]:
        """Every run container of this instance (or one app), one API call."""
        rows = self.client.api.containers(all=True, filters={"label": labels(self.settings, app)})
        found = []
        for row in rows:
            lab = row.get("Labels") or {}
            try:
                version = int(lab.get("shipway.release", "0"))
            except ValueError:
                version = 0
            published = {p.get("PrivatePort"): int(p["PublicPort"])
                         for p in row.get("Ports") or [] if p.get("PublicPort")}
            found.append(Replica(
                id=row["Id"], name=(row.get("Names") or ["?"])[0].lstrip("/"),
                app=lab.get("shipway.app", ""), version=version,
                process_type=lab.get("shipway.process", ""), state=row.get("State", ""),
                host_port=published.get(CONTAINER_PORT), created=float(row.get("Created", 0)),
                ssh_port=published.get(SSH_PORT),
                app_host_key=lab.get(HOST_KEY_LABEL) == "app",
                size_label=lab.get(SIZE_LABEL)))
        return found

    # --- starting --------------------------------------------------------------
    def create(self, spec: ReleaseSpec, process_type: str, image: str,
               slug_url: str, keys_url: str | None) -> Replica:
        """Create, provision and start one replica; returns it with its port."""
        command = spec.process_types.get(process_type)
        if not command:
            raise ValueError(f"release v{spec.version} has no {process_type!r} process type")
        env = dict(spec.env)
        host_key = env.pop(HOST_KEY_VAR, "")
        env.update({
            "PORT": str(CONTAINER_PORT),
            "SHIPWAY_PROCESS_TYPE": process_type,
            "SHIPWAY_COMMAND": command,
            "SHIPWAY_SLUG_URL": slug_url,
        })
        if keys_url:
            env["SHIPWAY_KEYS_URL"] = keys_url
        suffix = secrets.token_hex(3)
        name = _NAME_SAFE.sub("-", f"shipway-{self.settings.instance}-{spec.app}"
                                   f"-v{spec.version}-{process_type}-{suffix}")
        ports: dict[str, Any] = {f"{SSH_PORT}/tcp": ("127.0.0.1", None)}
        if process_type == WEB:
            ports[f"{CONTAINER_PORT}/tcp"] = ("127.0.0.1", None)
        # A read-only root filesystem and fixed-size tmpfs mounts for every
        # writable path (see RunStorage), so what a replica writes is bounded
        # and never reaches the host's disk. The slug is unpacked onto
        # /workspace (where the stack image's /app points), which also
        # spares the copy-on-write layer (1.8 s on fuse-overlayfs for the
        # Elixir example's 700 files). The entrypoint and env arrive in a
        # small root-owned volume, as Docker copies nothing into a tmpfs nor
        # onto a read-only root.
        check_slug_fits(self.settings, spec)
        memory, cpus = replica_limits(self.settings, spec, self.host_cpus)
        storage = run_storage(self.settings)
        if memory > 0:  # 0: no limit
            memory += storage.total
        network = ensure_app_network(self.client, self.settings, spec.app)
        container = self.client.containers.create(
            image,
            command=["/usr/bin/tini", "-g", "--", "/bin/bash", f"{FILES_IN}/entrypoint.sh"],
            name=name,
            hostname=_NAME_SAFE.sub("-", f"{spec.app}-{process_type}-{suffix}")[:63],
            user=f"{APP_UID}:{APP_UID}",
            labels={
                "shipway.instance": self.settings.instance,
                "shipway.app": spec.app,
                "shipway.release": str(spec.version),
                "shipway.process": process_type,
                "shipway.role": ROLE,
                SIZE_LABEL: size_label(spec.size),
                **({HOST_KEY_LABEL: "app"} if host_key else {}),
            },
            ports=ports,
            network=network,
            read_only=True,
            tmpfs=storage.tmpfs(),
            mounts=[docker.types.Mount(FILES_IN, None, type="volume")],
            working_dir="/",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=memory,
            memswap_limit=memory,
            nano_cpus=int(cpus * 1e9),
            pids_limit=1024,
            stop_signal="SIGTERM",
            log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}},
        )
        try:
            files = {"entrypoint.sh": (entrypoint_script(), 0o444),
                     "env": (env_file(env), 0o444)}
            if host_key:
                files["ssh_host_key"] = (host_key.encode(), 0o444)
            container.put_archive(FILES_IN, _archive(files))
            container.start()
            container.reload()
        except Exception:
            self.remove(container.id)
            raise
        host_port = None
        bound = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(
            f"{CONTAINER_PORT}/tcp") or []
        if bound:
            host_port = int(bound[0]["HostPort"])
        return Replica(id=container.id, name=name, app=spec.app, version=spec.version,
                       process_type=process_type, state="running", host_port=host_port,
                       created=time.time(), app_host_key=bool(host_key),
                       size_label=size_label(spec.size))

    def wait_healthy(self, replica: Replica, health: HealthCheck, host_header: str,
                     cancelled: Callable[[], bool] = lambda: False) -> None:
        """Until the replica answers HTTP (any status below 500) on its port;
        a worker only has to stay up for a moment. Raises Unhealthy when it
        exits, when `health.timeout` passes, or when it has answered with an
        error `health.attempts` times (then each error answer is followed by
        ERROR_WAIT seconds, as an app may answer 503 while it warms up)."""
        start = time.monotonic()
        deadline = start + health.timeout
        settle = min(2.0, float(health.timeout))
        errors, last_error = 0, None
        while True:
            state, code, oom = self._state(replica.id)
            if state not in ("running", "created", "restarting"):
                message = (f"{replica.process_type} replica exited (code {code}) "
                           "before it was healthy")
                if oom:
                    message += ": out of memory (more than its limit; see ps:scale --size)"
                raise Unhealthy(message, self.log_tail(replica.id))
            wait = health.interval
            if replica.host_port is None:
                if time.monotonic() - start >= settle:
                    return
            else:
                status = self._answer(replica.host_port, health.path, host_header)
                if status is not None and status < 500:
                    return
                if status is not None:
                    errors, last_error = errors + 1, status
                    if health.attempts:  # else 5xx while warming up is polled as silence
                        wait = ERROR_WAIT
                    if health.attempts and errors >= health.attempts:
                        raise Unhealthy(f"{replica.process_type} replica answered {status} at "
                                        f"{health.path} {errors} time(s) "
                                        "(HEALTHCHECK_ATTEMPTS)", self.log_tail(replica.id))
            if time.monotonic() > deadline or cancelled():
                if last_error is not None:
                    what = f"answered only {last_error} at {health.path}"
                elif replica.host_port:
                    what = f"did not answer HTTP on $PORT ({CONTAINER_PORT}) at {health.path}"
                else:
                    what = "did not stay up"
                raise Unhealthy(f"{replica.process_type} replica {what} within "
                                f"{health.timeout} s", self.log_tail(replica.id))
            time.sleep(min(wait, max(0.0, deadline - time.monotonic())) or health.interval)

    def _state(self, container_id: str) -> tuple[str, int | None, bool]:
        """Status, exit code, and whether the kernel killed it for its
        memory limit."""
        try:
            info = self.client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return "gone", None, False
        state = info.get("State", {})
        return (state.get("Status", "unknown"), state.get("ExitCode"),
                bool(state.get("OOMKilled")))

    @staticmethod
    def _answer(port: int, path: str, host_header: str) -> int | None:
        """The HTTP status the replica answers with, None if no answer (not
        listening yet: Docker's proxy takes the connection and drops it)."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path, headers={"Host": host_header, "User-Agent": "shipway-health"})
            return conn.getresponse().status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    # --- inside a running replica ---------------------------------------------------
    def run_script(self, container_id: str, name: str, args: list[str],
                   timeout: float = 600) -> tuple[int, list[str]]:
        """Run `runner/files/<name>` in the replica as the app user: (exit
        status, output lines). Passed as `bash -c`'s script, so that it
        needs no file in the replica (whose root is read-only) and replicas
        started by an older Shipway get the current one."""
        exec_id = self.client.api.exec_create(container_id, ["timeout", str(int(timeout)), "bash",
                                                             "-c", runner_file(name).decode(),
                                                             name, *args],
                                              user=f"{APP_UID}:{APP_UID}", workdir="/app")["Id"]
        # A client that waits as long as the script may run: the shared
        # one gives up on a silent answer after 120 s, while the script
        # would go on without anyone reading its result.
        patient = docker.from_env(timeout=int(timeout) + 30)
        try:
            output = patient.api.exec_start(exec_id).decode("utf-8", "replace")
        finally:
            patient.close()
        code = self.client.api.exec_inspect(exec_id).get("ExitCode")
        return (code if code is not None else -1), output.splitlines()

    def read_file(self, container_id: str, path: str) -> str | None:
        """A small file of a running replica, None if it cannot be read."""
        try:
            result = self.client.containers.get(container_id).exec_run(
                ["cat", path], user=f"{APP_UID}:{APP_UID}")
        except docker.errors.APIError:
            return None
        return result.output.decode("utf-8", "replace") if result.exit_code == 0 else None

    # --- logs and stopping -------------------------------------------------------
    def log_tail(self, container_id: str, lines: int = 30) -> list[str]:
        try:
            raw = self.client.api.logs(container_id, stdout=True, stderr=True, tail=lines)
        except docker.errors.APIError:
            return []
        return raw.decode("utf-8", "replace").splitlines()[-lines:]

    def mark_stopping(self, replica: Replica) -> None:
        """Rename the replica so that its name says it is being stopped
        (see STOPPING_SUFFIX); a gone container needs no mark."""
        if replica.stopping:
            return
        try:
            self.client.api.rename(replica.id, replica.name + STOPPING_SUFFIX)
        except docker.errors.NotFound:
            pass

    def stop(self, container_id: str, grace: int) -> None:
        """SIGTERM, `grace` seconds to finish, then SIGKILL; then remove."""
        try:
            self.client.api.stop(container_id, timeout=grace)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            pass
        self.remove(container_id)

    def remove(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise
