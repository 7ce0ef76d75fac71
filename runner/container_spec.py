"""What a run container is made of, before any Docker call: its name,
labels, ports, limits, mounts and locked-down options, the environment the
entrypoint sources and the root-owned files it is handed. `Containers`
(runner/containers.py) makes the Docker calls with it.
"""
from __future__ import annotations

import io
import re
import secrets
import shlex
import tarfile
import time
from importlib import resources
from typing import Any

import attrs
import docker

from builder.networks import app_network_name
from builder.stack import APP_UID
from core.settings import Settings
from core.specs import ReleaseSpec, size_limits
from runner.run_disk import FILES_IN, run_storage

WEB = "web"
CONTAINER_PORT = 5000  # PORT inside every container (as on Heroku)
SSH_PORT = 2222  # the replica's sshd (non-root, so above 1024)
# An Erlang release's node listens for its distribution on this port
# (runner/files/entrypoint.sh). Published on 127.0.0.1 like the web and SSH
# ports: the host reaches a replica only there, never at its address on
# the app's network (hot upgrades call the node through it).
DIST_PORT = 9100
ROLE = "run"
# The app's SSH host key travels in ReleaseSpec.env under this name, from the
# controller to here, and goes into the container as a file of its own.
HOST_KEY_VAR = "SHIPWAY_SSH_HOST_KEY"
HOST_KEY_LABEL = "shipway.ssh-host-key"  # "app" on replicas that were given it
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_NAME_SAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


# A replica being stopped is renamed to end with this before it is: a server
# killed meanwhile must not adopt it at its next start (it may be halfway
# through its SIGTERM grace) in place of the replica that replaced it.
STOPPING_SUFFIX = "-stopping"
SIZE_LABEL = "shipway.size"  # "" for the server's defaults, else the size


def size_label(size: float | None) -> str:
    return "" if size is None else repr(float(size))


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


def files_archive(files: dict[str, tuple[bytes, int]]) -> bytes:
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


_archive = files_archive  # the older name


@attrs.frozen
class RunContainerSpec:
    """One replica to create: `options` go to `containers.create` with the
    image and the network; `env` and `host_key` become its files."""

    name: str
    options: dict[str, Any]
    env: dict[str, str]
    host_key: str


def run_container_spec(settings: Settings, spec: ReleaseSpec, process_type: str,
                       slug_url: str, keys_url: str | None, host_cpus: int) -> RunContainerSpec:
    """The locked-down container of one replica of `spec` (ValueError when
    the release has no such process type)."""
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
    env.update(cluster_env(spec.app))
    suffix = secrets.token_hex(3)
    name = _NAME_SAFE.sub("-", f"shipway-{settings.instance}-{spec.app}"
                               f"-v{spec.version}-{process_type}-{suffix}")
    ports: dict[str, Any] = {f"{SSH_PORT}/tcp": ("127.0.0.1", None),
                             f"{DIST_PORT}/tcp": ("127.0.0.1", None)}
    if process_type == WEB:
        ports[f"{CONTAINER_PORT}/tcp"] = ("127.0.0.1", None)
    # A read-only root filesystem and fixed-size tmpfs mounts for every
    # writable path (see RunStorage), so what a replica writes is bounded
    # and never reaches the host's disk. The slug is unpacked onto
    # /workspace (where the stack image's /app points), which also
    # spares the copy-on-write layer (1.8 s on fuse-overlayfs for the
    # Elixir example's 700 files). The entrypoint and env arrive in a
    # small root-owned volume, as Docker copies nothing into a tmpfs nor
    # onto a read-only root. It holds the app's config and host key: every
    # removal of such a container passes v=True, or it outlives it on disk.
    memory, cpus = replica_limits(settings, spec, host_cpus)
    storage = run_storage(settings)
    if memory > 0:  # 0: no limit
        memory += storage.total
    options = dict(
        command=["/usr/bin/tini", "-g", "--", "/bin/bash", f"{FILES_IN}/entrypoint.sh"],
        name=name,
        hostname=_NAME_SAFE.sub("-", f"{spec.app}-{process_type}-{suffix}")[:63],
        user=f"{APP_UID}:{APP_UID}",
        labels={
            "shipway.instance": settings.instance,
            "shipway.app": spec.app,
            "shipway.release": str(spec.version),
            "shipway.process": process_type,
            "shipway.role": ROLE,
            SIZE_LABEL: size_label(spec.size),
            **({HOST_KEY_LABEL: "app"} if host_key else {}),
        },
        ports=ports,
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
        # Clustering: every replica answers to the app's discovery name on
        # the app's own network (Docker's DNS returns all of them).
        networking_config={app_network_name(settings, spec.app): docker.types.EndpointConfig(
            "1.41", aliases=[cluster_dns_name(spec.app)])},
    )
    return RunContainerSpec(name=name, options=options, env=env, host_key=host_key)


def cluster_dns_name(app: str) -> str:
    """The name that resolves, on the app's network, to the address of each
    of its replicas: libcluster's DNSPoll `query` (its nodes are
    `APP@<address>`, the entrypoint names each replica's node so)."""
    return f"{app}.shipway.internal"


def cluster_env(app: str) -> dict[str, str]:
    """What a clustering library needs to find the app's other replicas: the
    discovery name, and the names Gigalixir sets for libcluster's
    Kubernetes strategy (ready for a Kubernetes runner)."""
    return {"SHIPWAY_CLUSTER_DNS": cluster_dns_name(app),
            "LIBCLUSTER_KUBERNETES_SELECTOR": f"repo={app}",
            "LIBCLUSTER_KUBERNETES_NODE_BASENAME": app}


def container_files(made: RunContainerSpec) -> bytes:
    """The tar of its root-owned files (entrypoint, env, the app's host key)."""
    files = {"entrypoint.sh": (entrypoint_script(), 0o444),
             "env": (env_file(made.env), 0o444)}
    if made.host_key:
        files["ssh_host_key"] = (made.host_key.encode(), 0o444)
    return files_archive(files)
