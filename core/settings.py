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
from typing import Any, Iterator, Mapping

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
    # --- issue 14, finding 8 (API bodies): JSON nesting, 400 past it ---------
    json_depth: int = 32
    # --- issue 14, findings 3 and 4: sizes counted uncompressed ---------------
    # A gzip-encoded git request body (fetch negotiation) may inflate to at
    # most this; a push's to at most repo_bytes + request_body_bytes.
    inflated_body_bytes: int = 64 * 1024 * 1024
    # One file (blob) of a push, refused at receive and at build.
    blob_bytes: int = 500 * 1024 * 1024
    # The whole unpacked source tree a build gets (submodules included).
    source_tree_bytes: int = 2 * 1024 * 1024 * 1024
    # --- end issue 14 ----------------------------------------------------------


# --- issue 19: the server's proxy and package index variables for builds -----
# Given to build containers as the server has them (never to slugs or run
# containers); both spellings of the proxy variables, as tools differ.
BUILD_PASSTHROUGH = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PIP_INDEX_URL",
                     "PIP_EXTRA_INDEX_URL", "NPM_CONFIG_REGISTRY")
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def mask_userinfo(text: str) -> str:
    """A URL (or several) with any `user:password@` shown as `***@`."""
    return _USERINFO.sub("***@", text)


class BuildEnv(Mapping[str, str]):
    """The variables builds get; shown with credentials masked, as a proxy
    or index URL may carry them (`--print-config`, logs, reprs). Not a dict,
    so that nothing that serialises settings walks into the values."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "BuildEnv":
        env: dict[str, str] = {}
        for name in BUILD_PASSTHROUGH:
            value = environ.get(name) or environ.get(name.lower())
            if value:
                env[name] = value
                if name.endswith("_PROXY"):
                    env[name.lower()] = value
        return cls(env)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return repr({k: mask_userinfo(v) for k, v in self._values.items()})

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __hash__(self) -> int:  # a frozen Settings hashes its fields
        return hash(tuple(sorted(self._values.items())))


def _build_env(value: Any) -> BuildEnv:
    if isinstance(value, str):  # SHIPWAY_BUILD_ENV or YAML: a JSON object
        import json

        value = json.loads(value or "{}")
    return BuildEnv({str(k): str(v) for k, v in dict(value or {}).items()
                     if k in BUILD_PASSTHROUGH or k.upper() in BUILD_PASSTHROUGH})
# --- end issue 19 --------------------------------------------------------------


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
    # --- issue 16 (router): the proxy the router drives: "haproxy" (changed
    # at run time, never reloaded per route change) or "nginx" (the former
    # router, reloaded per change; kept as the benchmarks' peer).
    router_proxy: str = attrs.field(default="haproxy",
                                    validator=attrs.validators.in_(["haproxy", "nginx"]))
    # --- end issue 16 (router) ---
    # --- issue 16 (TLS): the router's https port (TLS by SNI), ACME, and
    # the platform's own certificate (API and git over HTTPS).
    https_port: int = 8443
    acme_directory: str | None = None  # None: no ACME (always so for base domain localhost)
    acme_email: str | None = None
    acme_ca_bundle: str | None = None  # a PEM the ACME client trusts (private ACME server)
    # Renewal at this fraction of a certificate's lifetime; a failed issuance
    # is retried after acme_retry_seconds, doubling per failure (at most a day).
    acme_renew_fraction: float = 2 / 3
    acme_retry_seconds: int = 60
    # certs:auto:refresh: not again within this (s) of a name's last try (429): one ACME account.
    cert_refresh_interval: int = 600
    cert_refreshes_per_hour: int = 30  # ...and at most this many names refreshed per hour, all apps
    tls_cert: str | None = None  # PEM chain for the API and git over HTTPS
    tls_key: str | None = None
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
    # --- issue 19: builds reach package indexes as the host does -------------
    # A PEM bundle added to the stack image's trust store, with the host's
    # /usr/local/share/ca-certificates (builder/stack_ca.py).
    extra_ca: str | None = None
    # Proxy and index variables for builds: by default the server's own
    # (BUILD_PASSTHROUGH, read by load_settings).
    build_env: BuildEnv = attrs.field(factory=BuildEnv, converter=_build_env)
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
    # --- issue 14, finding 8: login throttling, reserved names, keys URL ---
    # Failed password/API-key checks per account and per client address
    # within the window before a lock of login_throttle_delay seconds,
    # doubled by each further failure up to login_throttle_max_delay.
    login_throttle_account_failures: int = 5
    login_throttle_address_failures: int = 50
    login_throttle_window: int = 900
    login_throttle_delay: float = 2.0
    login_throttle_max_delay: int = 900
    # App names refused besides the built-in list (comma-separated).
    reserved_app_names: str = ""
    # Lifetime (seconds) of a run container's keys-URL signature; the
    # container fetches its keys every 60 s and gets a fresh URL each time.
    keys_url_ttl: int = 3600
    # Open ps:ssh tunnels re-check their user's access this often (seconds;
    # removals in this process end them at once, this catches the others).
    ssh_session_recheck: int = 15
    # --- issue 14, findings 1 and 2: what a push's fetches may reach --------
    # Buildpack and submodule fetches never reach loopback, private,
    # link-local or this host's addresses, except these hosts or host:ports
    # (comma-separated; builder/fetch_guard.py). Each connection gets
    # fetch_connect_timeout seconds to connect (and to stay silent); all of
    # one build's fetches together get fetch_timeout seconds.
    fetch_allow: str = ""
    fetch_connect_timeout: int = 10
    fetch_timeout: int = 120
    # --- issue 18, items 3 and 4: durable logs and drains (logger/) ---
    # Bytes of log history kept per app (logs.sqlite3 under data_dir), live
    # followers per app, lines a drain may hold before dropping, and the CA
    # bundle (PEM) trusted for syslog+tls:// and https:// drains besides the
    # system store (tests).
    log_bytes_per_app: int = attrs.field(default=10 << 20, validator=attrs.validators.ge(4096))
    log_followers_per_app: int = 1000
    drain_buffer_lines: int = 100_000  # and at most logger.drains.BUFFER_BYTES
    drain_ca_bundle: str = ""
    # --- issue 18, items 1 and 2: release phase and one-off runs (runner/oneoff.py) ---
    # Seconds a Procfile `release:` command may run (an app's config var
    # RELEASE_PHASE_TIMEOUT overrides it) and a `shipway run` one-off.
    release_phase_timeout: int = attrs.field(default=600, validator=attrs.validators.ge(1))
    run_timeout: int = attrs.field(default=3600, validator=attrs.validators.ge(1))
    # --- issue 14: slug pruning and domain proof (controller/slug_pruning.py,
    # controller/domain_ownership.py) ---
    # Slugs of an app's newest N releases (and of what runs) are kept; the
    # others are deleted from the slug store after each successful deploy.
    slug_keep: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    # "off": a custom domain is routed once added (the registrable-domain
    # rule still applies); "dns": only once its TXT challenge is found.
    domain_verify: str = attrs.field(default="off",
                                     validator=attrs.validators.in_(("off", "dns")))
    # The DNS server ("host[:port]") domain challenges are looked up at;
    # None: the system's resolvers. For private resolvers and tests.
    dns_server: str | None = None
    # --- end issue 14 block ---
    # Run containers.
    runner: str = "docker"
    # --- issue 15 item 5: "memory" runs builds and replicas in memory
    # (builder/memory.py, runner/memory.py): API tests without Docker. ---
    builder: str = attrs.field(default="docker",
                               validator=attrs.validators.in_(("docker", "memory")))
    run_memory: str = attrs.field(default="512m", validator=_docker_size)
    run_cpus: float = 1.0
    # No longer used: every replica's /app is a tmpfs of run_disk's share
    # (kept so that existing config files still load).
    run_tmpfs_max: str = attrs.field(default="64m", validator=_docker_size)
    # --- disk limits of containers (issue 14) ---
    # What one replica may write in all (its root is read-only; /app, /tmp
    # and /shipway are tmpfs of fixed sizes adding up to this, charged to
    # its memory limit on top of run_memory). A slug that unpacks to more
    # fails its deploy. See runner/containers.py RunStorage.
    run_disk: str = attrs.field(default="1g", validator=_docker_size)
    # What one build may write in its workspace (source, /app, cache) and /tmp.
    build_disk: str = attrs.field(default="4g", validator=_docker_size)
    # --- end disk limits ---
    # --- container networks' addresses (issue 14; builder/subnets.py) ---
    # The private range each app's (and the builds') network takes a subnet
    # of, instead of Docker's default pools (about 30 networks in all). Not
    # used by Docker by default; parts that overlap the host's routes or any
    # Docker network are skipped.
    network_pool: str = "10.213.0.0/16"
    # The prefix length of each network's subnet (26: 62 addresses, 1024
    # networks in the default pool).
    network_prefix: int = 26
    # --- end container networks ---
    health_path: str = "/"
    health_timeout: int = 60
    health_attempts: int = 0  # error answers that fail a replica at once; 0: no limit
    stop_grace: int = 30
    nginx_binary: str = "nginx"
    # Every container and volume this server makes carries the Docker label
    # shipway.instance=<instance>, so two servers (or test runs) on one Docker
    # engine never adopt or remove each other's.
    # --- issue 15, item 8: unless set, load_settings takes the data dir's own
    # (generated once, kept in <data dir>/instance; core/instance.py). ---
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
    # --- issue 15, item 8: the instance is the data dir's unless set --------
    if "instance" not in values:
        from core.instance import instance_for

        data_dir = _path(values.get("data_dir") or _FIELDS["data_dir"].default)
        values["instance"], origin["instance"] = instance_for(data_dir)
    # --- end issue 15, item 8 ---
    # issue 19: the server's proxy and index variables, unless set explicitly.
    if "build_env" not in values:
        values["build_env"] = BuildEnv.from_environ(environ)
    if limits:
        unknown = sorted(set(limits) - set(_LIMIT_FIELDS))
        if unknown:
            raise ValueError(f"unknown limit(s): {', '.join(unknown)}")
        values["limits"] = Limits(**{k: _coerce(_LIMIT_FIELDS[k], str(v))
                                     for k, v in limits.items()})
    return Settings(**values), origin
