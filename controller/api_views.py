"""What API handlers share: the call they receive, checks on JSON body
fields, and the JSON shape of each value object (one place, so the API, the
OpenAPI document and the CLI agree)."""
from __future__ import annotations

import datetime as dt
import os
from typing import Any, Callable, Protocol

import attrs

from controller.errors import BadRequest
from controller.models import App, Build, Domain, Release, SshKey, User
from controller.service import Controller
from core.settings import Settings
from core.specs import ReplicaState
from logger.store import LogStore
from runner.interface import IRunner


class ApiParts(Protocol):
    """The parts the API reads (the composition root's Services has them)."""

    settings: Settings
    controller: Controller
    runner: IRunner
    logs: LogStore | None


@attrs.frozen
class Call:
    """One authenticated request, as a handler sees it (in a worker thread)."""

    services: ApiParts
    user: User | None
    params: dict[str, str]
    body: dict[str, Any] | None
    # Where deploy progress lines go as they happen (a streaming response),
    # besides the `log` list of the final answer.
    progress: Callable[[str], None] | None = None
    query: dict[str, str] = attrs.field(factory=dict)  # ?name=value, first of each
    client: str | None = None  # the caller's address (login throttling)

    @property
    def controller(self) -> Controller:
        return self.services.controller

    @property
    def me(self) -> User:
        assert self.user is not None, "route declared auth=False"
        return self.user

    def field(self, name: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
        """A body field of the given JSON type; BadRequest if missing or wrong."""
        body = self.body or {}
        if name not in body or body[name] is None:
            if required:
                raise BadRequest(f"missing field {name!r}")
            return None
        value = body[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python, never in JSON.
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            names = " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)
            raise BadRequest(f"field {name!r} must be {names}")
        return value


@attrs.frozen
class Follow:
    """A handler's answer that keeps streaming (`logs -f`): the API sends
    `first`, then each line passed to the sink given to `attach`, as NDJSON,
    and calls `stop` when the client leaves. Nothing holds a thread."""

    first: list[str]
    attach: Callable[[Callable[[str | bytes], None]], None]  # bytes: one NDJSON line already
    stop: Callable[[], None]


_JSON_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object",
               bool: "true or false"}


def output_collector(forward: Callable[[str], None] | None = None) -> tuple[list[str], Any]:
    """A list of deploy progress lines and the `output` callable that fills it
    (bounded: a runaway deploy log must not fill memory), also passing each
    line to `forward` when the client streams."""
    lines: list[str] = []

    def output(line: str) -> None:
        line = str(line).rstrip("\n")
        if len(lines) < 2000:
            lines.append(line)
        if forward is not None:
            forward(line)

    return lines, output


def when(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "created_at": when(user.created_at)}


def ssh_key_json(key: SshKey) -> dict[str, Any]:
    return {"id": key.id, "fingerprint": key.fingerprint, "key_type": key.key_type,
            "comment": key.comment, "public_key": key.public_key,
            "created_at": when(key.created_at)}


def app_urls(settings: Settings, name: str) -> dict[str, str]:
    return {
        "git_http": f"http://{settings.public_host}:{settings.http_port}/{name}.git",
        "git_ssh": f"ssh://git@{settings.public_host}:{settings.ssh_port}/{name}.git",
        "web": settings.app_url(name),
    }


def app_json(settings: Settings, app: App, user: User) -> dict[str, Any]:
    return {"name": app.name, "owner": app.owner_email,
            "role": "owner" if app.owner_id == user.id else "collaborator",
            "created_at": when(app.created_at), "urls": app_urls(settings, app.name)}


def size_json(settings: Settings, app: App) -> dict[str, Any]:
    """Each replica's size and the limits it means (`size` null: the
    server's defaults; `memory_mb` 0: no memory limit)."""
    from core.specs import size_limits

    # The embedded runner's engine is this machine's: its CPUs cap the size's.
    memory, cpus = size_limits(settings, app.replica_size, os.cpu_count() or 1)
    return {"size": app.replica_size, "memory_mb": memory // (1024 * 1024), "cpus": cpus}


def release_json(release: Release | None) -> dict[str, Any] | None:
    if release is None:
        return None
    return {"version": release.version, "status": release.status,
            "description": release.description, "commit": release.commit,
            "slug_id": release.slug_id, "process_types": dict(release.process_types),
            "created_by": release.created_by, "created_at": when(release.created_at),
            "slug_pruned": release.slug_pruned, "hot": release.hot}


def domain_json(domain: Domain, certificate: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"hostname": domain.hostname, "created_at": when(domain.created_at),
                            "verified": domain.verified}
    # Issue 16: the name's TLS certificate (status pending/issued/failed,
    # not_after, error); null when ACME is off.
    body["certificate"] = certificate
    if domain.challenge is not None:  # SHIPWAY_DOMAIN_VERIFY=dns: what to create
        body["challenge"] = {"type": "TXT", "name": domain.challenge[0],
                             "value": domain.challenge[1]}
    return body


def build_json(build: Build) -> dict[str, Any]:
    return {"id": build.id, "ref": build.ref, "commit": build.commit,
            "user": build.user_email, "status": build.status,
            "release_version": build.release_version, "output": build.output,
            "started_at": when(build.started_at), "finished_at": when(build.finished_at)}


def replica_json(replica: ReplicaState) -> dict[str, Any]:
    """A runner.interface.ReplicaState."""
    uptime = None
    if replica.state == "running" and replica.started_at is not None:
        # The server's clock: a CLI on another machine may not agree with it.
        uptime = max(0, int((dt.datetime.now(dt.timezone.utc) - replica.started_at)
                            .total_seconds()))
    return {"version": replica.version, "process_type": replica.process_type,
            "container_id": replica.container_id, "state": replica.state,
            "host_port": replica.host_port, "started_at": when(replica.started_at),
            "uptime_seconds": uptime}


def certificate_statuses(call: Call, hostnames: list[str]) -> dict[str, dict[str, Any]]:
    """Issue 16: each name's certificate as `domains --json` shows it; names
    not yet seen by the certificate manager are pending (none when ACME is off)."""
    from controller.certificates import CertificateStore, acme_enabled

    settings = call.services.settings
    if not acme_enabled(settings.acme_directory, settings.base_domain):
        return {}
    found = CertificateStore(call.controller.db, call.controller.keyring).statuses(hostnames)
    pending = {"status": "pending", "not_after": None, "error": None}
    return {h: found[h].json() if h in found else pending for h in hostnames}


def app_certificate(call: Call, app: App) -> dict[str, Any] | None:
    """Issue 16: the certificate of the app's own name (APP.<base domain>)
    for `apps:info --json`, as `domains --json` shows a name's; null when
    ACME is off."""
    host = call.services.settings.app_hostname(app.name)
    return certificate_statuses(call, [host]).get(host)
