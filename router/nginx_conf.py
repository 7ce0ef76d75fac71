"""Renders the managed nginx's one configuration file from the routes.

Pure functions of (settings-derived layout, routes, generation): no files, no
processes, so the rendering is easy to read and to test. Every value that comes
from users (app names, hostnames) is checked against a strict pattern before it
reaches the file, so a hostname can never inject nginx directives.
"""
from __future__ import annotations

import re
from typing import Iterable

import attrs

from router.interface import Route

# A DNS name: labels of letters, digits and inner hyphens (wildcards are not
# routed). App names are DNS labels, so they match too.
_HOSTNAME = re.compile(r"^(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z")
_UPSTREAM_HOST = re.compile(r"^[0-9a-zA-Z.:\[\]-]{1,64}\Z")

# The host name the control plane uses to ask nginx which configuration its
# workers run (".invalid" is reserved: no app can ever be served under it).
GENERATION_HOST = "generation.shipway.invalid"
GENERATION_HEADER = "X-Shipway-Generation"

_NOT_FOUND_PAGE = (
    "<!doctype html><title>No such app</title><h1>404: no app here</h1>"
    "<p>Shipway serves no app at this host name. Check the app name and domain.</p>"
)
_NO_REPLICA_PAGE = (
    "<!doctype html><title>App unavailable</title><h1>503: app unavailable</h1>"
    "<p>This app has no running web replica (not deployed yet, scaled to zero, "
    "or restarting). Try again shortly.</p>"
)


@attrs.frozen
class Layout:
    """Where the managed nginx keeps its files, all under one prefix."""

    prefix: str  # the router's directory (nginx -p)
    listen_host: str
    listen_port: int
    worker_user: str | None  # set only when the master runs as root
    workers: int = 1

    @property
    def conf(self) -> str:
        return f"{self.prefix}/nginx.conf"

    @property
    def pid(self) -> str:
        return f"{self.prefix}/nginx.pid"

    @property
    def error_log(self) -> str:
        return f"{self.prefix}/logs/error.log"


def check_route(route: Route) -> None:
    """Refuse a route whose names or upstreams could break or inject config."""
    if not _HOSTNAME.match(route.app) or "." in route.app:
        raise ValueError(f"invalid app name for a route: {route.app!r}")
    for name in route.hostnames:
        if not _HOSTNAME.match(name):
            raise ValueError(f"invalid hostname for app {route.app}: {name!r}")
    for host, port in route.upstreams:
        if not _UPSTREAM_HOST.match(host) or not 0 < int(port) < 65536:
            raise ValueError(f"invalid upstream for app {route.app}: {host}:{port}")


def _quote(text: str) -> str:
    # Only Shipway's own constant pages are quoted; they hold no "$" or "\\".
    return '"' + text.replace('"', '\\"') + '"'


def _listen(layout: Layout, default: bool = False) -> str:
    suffix = " default_server" if default else ""
    return f"listen {layout.listen_host}:{layout.listen_port}{suffix};"


def _app_block(layout: Layout, route: Route) -> str:
    """One app: an upstream of its healthy replicas and a server for its names.

    TLS seam: when certificates arrive, a second `listen ... ssl` plus the
    certificate paths go in this server block, keyed by the same hostnames.
    """
    names = " ".join(sorted(set(route.hostnames)))
    if not route.upstreams:
        return f"""
    server {{
        {_listen(layout)}
        server_name {names};
        location / {{
            default_type text/html;
            return 503 {_quote(_NO_REPLICA_PAGE)};
        }}
    }}
"""
    servers = "\n".join(f"        server {host}:{int(port)} max_fails=1 fail_timeout=2s;"
                        for host, port in route.upstreams)
    upstream = f"shipway_app_{route.app}"
    return f"""
    upstream {upstream} {{
{servers}
        keepalive 32;
        # nginx would otherwise close each kept-alive replica connection
        # after 1,000 requests; every new one costs a docker-proxy dial.
        keepalive_requests 100000;
        # Idle ones are closed before the app would (Node closes after 5 s),
        # so nginx never reuses a connection the app is closing.
        keepalive_timeout 4s;
    }}
    server {{
        {_listen(layout)}
        server_name {names};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            # Keep-alive to the replica unless the client asks for a
            # WebSocket upgrade, which is passed through.
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Request-Start "t=${{msec}}";
            # A replica that refuses the connection (stopping, just died) is
            # skipped for the next one; requests already sent are not replayed.
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
            error_page 502 504 = @unavailable;
        }}
        location @unavailable {{
            default_type text/html;
            return 503 {_quote(_NO_REPLICA_PAGE)};
        }}
    }}
"""


def render(layout: Layout, routes: Iterable[Route], generation: int) -> str:
    """The whole nginx.conf: globals, the 404 default server, the generation
    probe, then one block per app (sorted, so equal routes render equally)."""
    user = f"user {layout.worker_user};\n" if layout.worker_user else ""
    apps = "".join(_app_block(layout, r) for r in sorted(routes, key=lambda r: r.app))
    return f"""# Rendered by Shipway's router; edits are overwritten.
{user}worker_processes {max(1, layout.workers)};
pid {layout.pid};
error_log {layout.error_log} warn;
worker_shutdown_timeout 60s;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    server_tokens off;
    # Nothing is buffered to disk: the workers may run as an unprivileged user
    # that cannot enter the (private) data directory.
    client_body_temp_path {layout.prefix}/tmp/client_body;
    proxy_temp_path {layout.prefix}/tmp/proxy;
    fastcgi_temp_path {layout.prefix}/tmp/fastcgi;
    uwsgi_temp_path {layout.prefix}/tmp/uwsgi;
    scgi_temp_path {layout.prefix}/tmp/scgi;
    proxy_request_buffering off;
    proxy_max_temp_file_size 0;
    client_max_body_size 100m;
    client_body_buffer_size 1m;
    keepalive_timeout 65s;
    keepalive_requests 100000;
    # Room for a name of 253 characters (the longest a domain can be).
    server_names_hash_bucket_size 512;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" ""; }}

    server {{
        {_listen(layout, default=True)}
        server_name _;
        location / {{
            default_type text/html;
            return 404 {_quote(_NOT_FOUND_PAGE)};
        }}
    }}
    server {{
        {_listen(layout)}
        server_name {GENERATION_HOST};
        location / {{
            add_header {GENERATION_HEADER} {generation} always;
            return 204;
        }}
    }}
{apps}}}
"""
