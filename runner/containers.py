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
import os
import socket
import threading
import time
from typing import Any, Callable

import attrs
import docker
import docker.errors
import docker.utils.socket

from builder.networks import ensure_app_network
from builder.stack import APP_UID
from core.settings import Settings
from core.specs import HealthCheck, ReleaseSpec
from runner.container_spec import (  # noqa: F401 (also what others import from here)
    CONTAINER_PORT, DIST_PORT, HOST_KEY_LABEL, HOST_KEY_VAR, ROLE, SIZE_LABEL, SSH_PORT,
    STOPPING_SUFFIX, WEB, container_files, entrypoint_script, env_file, labels,
    replica_limits, run_container_spec, runner_file, size_label)
from runner.run_disk import FILES_IN, check_slug_fits

# What a script run in a replica prints is the app's (its owner's code
# runs there): read up to MAX_OUTPUT bytes, each line cut at MAX_LINE
# characters, before it goes to the pusher and the app's logs.
MAX_OUTPUT = 1 << 20
MAX_LINE = 1000


class Unhealthy(Exception):
    """A new replica did not become healthy; `log_tail` says why."""

    def __init__(self, message: str, log_tail: list[str]) -> None:
        super().__init__(message)
        self.log_tail = log_tail


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
    # Its node's distribution port published on 127.0.0.1 (the hot
    # upgrade's); None on a replica started before it was published.
    dist_port: int | None = None
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
                ssh_port=published.get(SSH_PORT), dist_port=published.get(DIST_PORT),
                app_host_key=lab.get(HOST_KEY_LABEL) == "app",
                size_label=lab.get(SIZE_LABEL)))
        return found

    # --- starting --------------------------------------------------------------
    def create(self, spec: ReleaseSpec, process_type: str, image: str,
               slug_url: str, keys_url: str | None) -> Replica:
        """Create, provision and start one replica (runner/container_spec.py
        says what it is made of); returns it with its port."""
        made = run_container_spec(self.settings, spec, process_type, slug_url, keys_url,
                                  self.host_cpus)
        check_slug_fits(self.settings, spec)
        network = ensure_app_network(self.client, self.settings, spec.app)
        container = self.client.containers.create(image, network=network, **made.options)
        try:
            container.put_archive(FILES_IN, container_files(made))
            container.start()
            container.reload()
        except Exception:
            self.remove(container.id)
            raise
        ports = container.attrs.get("NetworkSettings", {}).get("Ports") or {}

        def host_port(port: int) -> int | None:
            bound = ports.get(f"{port}/tcp") or []
            return int(bound[0]["HostPort"]) if bound else None
        return Replica(id=container.id, name=made.name, app=spec.app, version=spec.version,
                       process_type=process_type, state="running", host_port=host_port(CONTAINER_PORT),
                       dist_port=host_port(DIST_PORT),
                       created=time.time(), app_host_key=bool(made.host_key),
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
                   timeout: float = 600, stdin: bytes | None = None) -> tuple[int, list[str]]:
        """Run `runner/files/<name>` in the replica as the app user: (exit
        status, output lines). Passed as `bash -c`'s script, so that it
        needs no file in the replica (whose root is read-only) and replicas
        started by an older Shipway get the current one. `stdin`, when
        given, is the script's standard input (the hot upgrade's artefact:
        no fetch from inside the replica). Its output is the app's: at
        most MAX_OUTPUT bytes are read (the script is then left to its
        `timeout`), lines cut at MAX_LINE characters."""
        exec_id = self.client.api.exec_create(container_id, ["timeout", str(int(timeout)), "bash",
                                                             "-c", runner_file(name).decode(),
                                                             name, *args],
                                              user=f"{APP_UID}:{APP_UID}", workdir="/app",
                                              stdin=stdin is not None)["Id"]
        # A client that waits as long as the script may run: the shared
        # one gives up on a silent answer after 120 s, while the script
        # would go on without anyone reading its result. The shared one's
        # API version: no version request to the engine first.
        patient = docker.from_env(timeout=int(timeout) + 30, version=self.client.api.api_version)
        try:
            if stdin is None:
                chunks, size = [], 0
                for chunk in patient.api.exec_start(exec_id, stream=True):
                    chunks.append(chunk[:MAX_OUTPUT - size])
                    size += len(chunks[-1])
                    if size >= MAX_OUTPUT:
                        break
                output = b"".join(chunks).decode("utf-8", "replace")
            else:
                output = _exec_with_stdin(patient, exec_id, stdin)
        finally:
            patient.close()
        code = self.client.api.exec_inspect(exec_id).get("ExitCode")
        return (code if code is not None else -1), [line[:MAX_LINE] for line in output.splitlines()]

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


def _exec_with_stdin(client: docker.DockerClient, exec_id: str, data: bytes) -> str:
    """Start the exec on a hijacked connection, write `data` to its stdin,
    close that side (end of file for the script) and read its output. A
    script that ends without reading all of its stdin (a refusal, a bad
    environment) must be reported by its own words and exit status: the
    engine then stops reading the stream but may hold the connection open
    for seconds (measured here: 0.3 to 25 s) before the write fails with a
    broken pipe, which told nothing. So the write runs in a thread, and
    once the engine says the process has ended, what it printed is taken
    and the connection closed."""
    sock = client.api.exec_start(exec_id, socket=True)
    raw = getattr(sock, "_sock", sock)  # the SDK's SocketIO wraps the socket
    chunks: list[bytes] = []

    def write() -> None:
        try:
            raw.sendall(data)
            raw.shutdown(socket.SHUT_WR)
        except OSError:  # BrokenPipe, ConnectionReset: the script is gone
            pass

    def read() -> None:
        size = 0
        try:
            for _stream, chunk in docker.utils.socket.frames_iter(sock, tty=False):
                chunks.append(chunk[:MAX_OUTPUT - size])
                size += len(chunks[-1])
                if size >= MAX_OUTPUT:  # the rest is not read (MAX_OUTPUT)
                    break
        except OSError:
            pass

    writer = threading.Thread(target=write, name="exec-stdin", daemon=True)
    reader = threading.Thread(target=read, name="exec-output", daemon=True)
    writer.start()
    reader.start()
    try:
        while reader.is_alive():
            reader.join(0.25)
            if reader.is_alive() and not client.api.exec_inspect(exec_id).get("Running", True):
                reader.join(1.0)  # its last words are on their way
                break
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        try:
            raw.shutdown(socket.SHUT_RDWR)  # unblocks a write still waiting
        except OSError:
            pass
        writer.join(5)
        sock.close()
