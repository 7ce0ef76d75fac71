"""One settings object for the whole platform, built from defaults, a YAML
file, `SHIPWAY_*` environment variables and command-line flags (later wins).

Every tunable default lives here so that `shipway server --print-config`
can show what is in force and where it came from; parts receive the object
explicitly instead of reading globals or the environment themselves.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import attrs
import yaml

ENV_PREFIX = "SHIPWAY_"


def _path(value: Any) -> Path:
    return Path(value).expanduser().resolve()


_SIZE = re.compile(r"^[0-9]+([kmg]b?|b)?\Z", re.IGNORECASE)


def docker_bytes(size: str) -> int:
    """A size as Docker takes it ("512m", "1g", "0") in bytes."""
    import docker.utils

    return int(docker.utils.parse_bytes(size))


def _docker_size(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
    """A size as Docker takes it ("512m", "1g", "0"), checked when the
    settings load rather than at the first container made with it."""
    if not _SIZE.match(str(value)):
        raise ValueError(f"{attribute.name}: not a size like 64m or 1g: {value!r}")


@attrs.frozen
class Limits:
    """Per-user and per-app limits, after Gigalixir's."""

    config_bytes: int = 32 * 1024
    ssh_keys_per_user: int = 50
    collaborators_per_app: int = 25
    apps_per_user: int = 100
    request_body_bytes: int = 1024 * 1024
    repo_bytes: int = 1024 * 1024 * 1024
    # ps:scale --size: the largest replica an app may ask for (GiB of memory
    # and CPUs; CPUs beyond the host's are capped at the host's).
    max_replica_size: float = 8.0


@attrs.frozen
class Settings:
    data_dir: Path = attrs.field(converter=_path, default=Path("~/.shipway"))
    # The address every listener binds to. Loopback by default: Shipway is
    # reached through the router, and tests only ever talk to 127.0.0.1.
    bind_host: str = "127.0.0.1"
    # The host name users put in their git remotes and URLs.
    public_host: str = "127.0.0.1"
    http_port: int = 5000
    ssh_port: int = 2222
    router_port: int = 8080
    # nginx worker processes; 0: half the host's cores (at least one), as
    # the router shares them with the replicas and Docker's port proxies,
    # and a worker per core made them contend (bench/router_overhead.py).
    router_workers: int = 0
    base_domain: str = "localhost"
    database_url: str | None = None
    master_key: str | None = None
    # HMAC secret API keys are derived from (None: api-key.secret in data_dir).
    api_key_secret: str | None = None
    # Slug storage: "local" (HMAC-signed URLs served by the API) or "s3".
    slug_store: str = "local"
    s3_bucket: str | None = None
    s3_prefix: str = "slugs/"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    # Builds.
    stack_image: str | None = None  # None: the recipe's shipway/stack:<version>
    build_timeout: int = 15 * 60
    build_network: bool = True
    build_memory: str = "2g"
    build_cpus: float = 2.0
    build_pids: int = 2048
    # After a build, a fresh build container is made ready for the app's
    # next push and kept this many seconds (0: never): starting one costs
    # about 0.4 s of a push. It is never used for more than one build.
    build_standby_ttl: int = 600
    max_slug_bytes: int = 500 * 1024 * 1024
    # Run containers.
    runner: str = "docker"
    run_memory: str = attrs.field(default="512m", validator=_docker_size)
    run_cpus: float = 1.0
    # A slug that unpacks to at most this much is unpacked into memory
    # (tmpfs) instead of a volume; the replica's memory limit grows by the
    # tmpfs's size. "0" turns it off. See runner/containers.py.
    run_tmpfs_max: str = attrs.field(default="64m", validator=_docker_size)
    health_path: str = "/"
    health_timeout: int = 60
    health_attempts: int = 0  # error answers that fail a replica at once; 0: no limit
    stop_grace: int = 30
    nginx_binary: str = "nginx"
    # Every container and volume this server makes carries the Docker label
    # shipway.instance=<instance>, so two servers (or test runs) on one Docker
    # engine never adopt or remove each other's.
    instance: str = "default"
    limits: Limits = attrs.field(factory=Limits)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'shipway.db'}"

    @property
    def api_url(self) -> str:
        return f"http://{self.public_host}:{self.http_port}"

    def app_hostname(self, app: str) -> str:
        """The name the router serves an app under: APP.<base domain>."""
        return f"{app}.{self.base_domain}".lower()

    def app_url(self, app: str) -> str:
        return f"http://{self.app_hostname(app)}:{self.router_port}/"


_FIELDS = {f.name: f for f in attrs.fields(Settings)}
_LIMIT_FIELDS = {f.name: f for f in attrs.fields(Limits)}


def _coerce(field: attrs.Attribute, value: Any) -> Any:
    """Turn a string from the environment or YAML into the field's type."""
    if value is None or not isinstance(value, str):
        return value
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if "bool" in kind:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return value


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike | None = None,
) -> tuple[Settings, dict[str, str]]:
    """Build settings from defaults < YAML file < environment < overrides.

    Returns the settings and, for each field that is not a default, where its
    value came from (for `--print-config`).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    origin: dict[str, str] = {}

    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file}: expected a mapping of settings")
        for key, value in loaded.items():
            key = key.replace("-", "_")
            if key == "limits" and isinstance(value, dict):
                for lk, lv in value.items():
                    limits[lk.replace("-", "_")] = lv
                    origin[f"limits.{lk}"] = f"file {config_file}"
            elif key in _FIELDS:
                values[key] = value
                origin[key] = f"file {config_file}"
            else:
                raise ValueError(f"{config_file}: unknown setting {key!r}")

    for name, field in _FIELDS.items():
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None and name != "limits":
            values[name] = _coerce(field, env_value)
            origin[name] = f"env {ENV_PREFIX}{name.upper()}"
    for name, field in _LIMIT_FIELDS.items():
        env_value = environ.get(ENV_PREFIX + "LIMIT_" + name.upper())
        if env_value is not None:
            limits[name] = _coerce(field, env_value)
            origin[f"limits.{name}"] = f"env {ENV_PREFIX}LIMIT_{name.upper()}"

    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name in _FIELDS:
            values[name] = value
            origin[name] = "flag"

    for name, value in list(values.items()):
        values[name] = _coerce(_FIELDS[name], value)
    if limits:
        unknown = sorted(set(limits) - set(_LIMIT_FIELDS))
        if unknown:
            raise ValueError(f"unknown limit(s): {', '.join(unknown)}")
        values["limits"] = Limits(**{k: _coerce(_LIMIT_FIELDS[k], str(v))
                                     for k, v in limits.items()})
    return Settings(**values), origin
