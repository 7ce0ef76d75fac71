"""One-off containers of a release (issue 18: the release phase, `shipway
run`, `ps:migrate`): the same image, slug, env and limits as a replica, on
the app's network, but no published port, no SSH server, and a role of
their own (`shipway.role=oneoff`, `shipway.kind=oneoff`) so supervision,
which keeps replicas at their count, never adopts nor removes one.

A one-off's output is streamed line by line to the caller's Output; it is
stopped at its timeout (and says so), and removed afterwards whatever
happened, so nothing of it outlives the run (a detached one is removed when
its command ends or its timeout kills it).
"""
from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from typing import Any, Callable

import attrs

from builder.networks import ensure_app_network
from core.output import Output
from core.settings import Settings
from core.specs import ReleaseSpec, ReplicaState
from runner.container_spec import (FILES_IN, HOST_KEY_LABEL, SSH_PORT, container_files,
                                   run_container_spec)

ROLE = "oneoff"
TIMED_OUT = 124  # the exit status of a one-off stopped at its timeout (as timeout(1))


@attrs.frozen
class OneOffResult:
    exit_code: int
    timed_out: bool
    container_id: str


def oneoff_labels(settings: Settings, app: str | None = None) -> list[str]:
    found = [f"shipway.instance={settings.instance}", f"shipway.role={ROLE}"]
    if app is not None:
        found.append(f"shipway.app={app}")
    return found


class OneOffs:
    """Starts, streams, times out and removes one-offs. `client()` is the
    runner's Docker client; `image(output)` the stack image."""

    def __init__(self, settings: Settings, client: Callable[[], Any],
                 image: Callable[[Output], str],
                 slug_url: Callable[[ReleaseSpec], str], host_cpus: Callable[[], int]) -> None:
        self.settings = settings
        self._host_cpus = host_cpus
        self._client = client
        self._image = image
        self._slug_url = slug_url

    def _create(self, spec: ReleaseSpec, command: str, kind: str, output: Output,
                keys_url: str | None = None) -> Any:
        """A created, provisioned, not yet started container running `command`.
        With `keys_url` (a terminal session) its sshd runs, on a port
        published on 127.0.0.1 only, for ps:ssh's path to reach it."""
        one = attrs.evolve(spec, process_types={kind: command}, formation={})
        made = run_container_spec(self.settings, one, kind, self._slug_url(spec), keys_url,
                                  self._host_cpus())
        client = self._client()
        options = dict(made.options)
        if keys_url:
            options["ports"] = {f"{SSH_PORT}/tcp": ("127.0.0.1", None)}
        else:
            options.pop("ports", None)  # nothing reaches a one-off from outside
            made = attrs.evolve(made, host_key="")
        options["labels"] = {**options["labels"], "shipway.role": ROLE,
                             "shipway.kind": "oneoff"}
        network = ensure_app_network(client, self.settings, spec.app)
        container = client.containers.create(self._image(output), network=network, **options)
        try:
            container.put_archive(FILES_IN, container_files(made))
        except Exception:
            container.remove(force=True, v=True)
            raise
        return container

    def run(self, spec: ReleaseSpec, command: str, output: Output, timeout: float,
            kind: str = "run") -> OneOffResult:
        """Run `command` to its end (or its timeout), streaming its output;
        the container is removed before this returns."""
        container = self._create(spec, command, kind, output)
        try:
            container.start()
            reader = threading.Thread(target=_stream, args=(container, output), daemon=True,
                                      name=f"oneoff-{container.id[:12]}")
            reader.start()
            timed_out = False
            try:
                status = container.wait(timeout=timeout)
                code = int(status.get("StatusCode", 1))
            except Exception:  # noqa: BLE001 (requests' read timeout: it runs on)
                timed_out = True
                code = TIMED_OUT
                try:
                    container.kill()
                except Exception:  # noqa: BLE001 (it may have ended just now)
                    pass
            reader.join(timeout=10)
            if timed_out:
                output(f"-----> {kind} command timed out after {timeout:g} s and was stopped")
            return OneOffResult(exit_code=code, timed_out=timed_out, container_id=container.id)
        finally:
            _remove(container)

    def detach(self, spec: ReleaseSpec, command: str, output: Output, timeout: float,
               kind: str = "run") -> str:
        """Start `command` and return its container id at once; its output
        goes to `output` (the app's logs) from a thread that also removes it."""
        container = self._create(spec, command, kind, output)
        try:
            container.start()
        except Exception:
            _remove(container)
            raise

        def finish() -> None:
            try:
                reader = threading.Thread(target=_stream, args=(container, output), daemon=True)
                reader.start()
                try:
                    code = int(container.wait(timeout=timeout).get("StatusCode", 1))
                except Exception:  # noqa: BLE001
                    code = TIMED_OUT
                    try:
                        container.kill()
                    except Exception:  # noqa: BLE001
                        pass
                reader.join(timeout=10)
                output(f"{kind} command exited with status {code}")
            finally:
                _remove(container)

        threading.Thread(target=finish, daemon=True, name=f"oneoff-{container.id[:12]}").start()
        return container.id

    def start_shell(self, spec: ReleaseSpec, keys_url: str, timeout: float,
                    kind: str = "run") -> str:
        """A one-off for a terminal session: it idles (at most `timeout`)
        with its sshd up, the user's command runs in an SSH session through
        the git gateway (`ssh -t`, as ps:ssh), and it is removed when the
        CLI says the session ended or at its timeout. Returns once its sshd
        answers (or after 60 s)."""
        container = self._create(spec, f"exec sleep {int(timeout)}", kind, lambda _l: None,
                                 keys_url=keys_url)
        try:
            container.start()
        except Exception:
            _remove(container)
            raise

        def reap() -> None:
            try:
                container.wait(timeout=timeout + 30)
            except Exception:  # noqa: BLE001
                pass
            _remove(container)

        threading.Thread(target=reap, daemon=True, name=f"oneoff-{container.id[:12]}").start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            port = self.ssh_port(spec.app, container.id)
            if port and _ssh_answers(port):
                break
            time.sleep(0.3)
        return container.id

    def ssh_port(self, app: str, prefix: str) -> int | None:
        """The 127.0.0.1 SSH port of the app's running one-off whose id starts
        with `prefix` (None: none, or several), if it carries the app's host key."""
        rows = [r for r in self._client().api.containers(
                    filters={"label": oneoff_labels(self.settings, app)})
                if r["Id"].startswith(prefix.lower())]
        if len(rows) != 1 or (rows[0].get("Labels") or {}).get(HOST_KEY_LABEL) != "app":
            return None
        for p in rows[0].get("Ports") or []:
            if p.get("PrivatePort") == SSH_PORT and p.get("PublicPort"):
                return int(p["PublicPort"])
        return None

    def stop(self, app: str, container_id: str) -> bool:
        """Remove the app's one-off `container_id` (the session ended)."""
        client = self._client()
        for row in client.api.containers(all=True,
                                         filters={"label": oneoff_labels(self.settings, app)}):
            if row["Id"] == container_id:
                _remove(client.containers.get(container_id))
                return True
        return False

    def remove_all(self, app: str | None, ended_only: bool = False) -> int:
        """Remove the app's one-offs (None: every one-off of this instance;
        `ended_only`: those no longer running, as another server sharing the
        engine may be waiting on a running one)."""
        client = self._client()
        filters: dict[str, Any] = {"label": oneoff_labels(self.settings, app)}
        if ended_only:
            filters["status"] = ["exited", "created", "dead"]
        rows = client.api.containers(all=True, filters=filters)
        for row in rows:
            try:
                client.api.remove_container(row["Id"], force=True, v=True)
            except Exception:  # noqa: BLE001 (already gone)
                pass
        return len(rows)

    def list(self, app: str) -> list[ReplicaState]:
        """The app's one-offs as Docker sees them now (for `ps`)."""
        rows = self._client().api.containers(all=True,
                                             filters={"label": oneoff_labels(self.settings, app)})
        found = []
        for row in rows:
            lab = row.get("Labels") or {}
            try:
                version = int(lab.get("shipway.release", "0"))
            except ValueError:
                version = 0
            created = dt.datetime.fromtimestamp(float(row.get("Created", 0)), dt.timezone.utc)
            found.append(ReplicaState(app=app, version=version,
                                      process_type=lab.get("shipway.process", "run"),
                                      container_id=row["Id"], state=row.get("State", ""),
                                      host_port=None, started_at=created))
        return found


def _stream(container: Any, output: Output) -> None:
    """Pass each line of the container's stdout and stderr on, as it comes;
    bytes that are not UTF-8 are replaced, a partial last line is sent too."""
    pending = b""
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                output(line.decode("utf-8", "replace").rstrip("\r"))
            if len(pending) > 64 * 1024:  # one endless line: cut it
                output(pending.decode("utf-8", "replace"))
                pending = b""
    except Exception:  # noqa: BLE001 (the container went away under us)
        pass
    if pending:
        output(pending.decode("utf-8", "replace"))


def _ssh_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _remove(container: Any) -> None:
    try:
        container.remove(force=True, v=True)
    except Exception:  # noqa: BLE001 (already gone)
        pass
