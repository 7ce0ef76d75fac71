"""Renders the managed HAProxy's configuration files.

Pure functions, no files or processes. The configuration is a directory that
HAProxy reads in name order (`haproxy -f conf.d/`):

- `00-main.cfg`: global settings, the frontends, the 404 backend and the
  handover backends (a reload that drops nothing: haproxy_handover). It
  changes only with the router's own settings (a reload, never per deploy).
- `50-slots-NNNN.cfg`: a chunk of `CHUNK` backends, one per app slot, with
  the servers each app had at its last change. HAProxy cannot create a
  backend at run time, so apps take pre-declared slots; their servers and
  the host map are changed at run time, and the chunk file is rewritten
  (one small file, whatever the number of apps) only so that a restarted
  proxy comes back with the same routes.
- `hosts.map`: `hostname slot-backend`, read at start and changed at run
  time with `add map`/`del map`.

Every user-supplied value is checked (router.nginx_conf.check_route) before
it reaches a file or a runtime command.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

import attrs

from router.haproxy_handover import (HANDED_OVER, render_handover_backends, render_handover_bind,
                                     render_handover_mark, render_handover_rule)


CHUNK = 256  # slot backends per chunk file
NOT_FOUND_BACKEND = "shipway_notfound"

_NOT_FOUND_PAGE = (
    "<!doctype html><title>No such app</title><h1>404: no app here</h1>"
    "<p>Shipway serves no app at this host name. Check the app name and domain.</p>"
)
_NO_REPLICA_PAGE = (
    "<!doctype html><title>App unavailable</title><h1>503: app unavailable</h1>"
    "<p>This app has no running web replica (not deployed yet, scaled to zero, "
    "or restarting). Try again shortly.</p>"
)

# Options given to every app server, in the file and on `add server` alike
# (HAProxy 2.6 does not apply `default-server` to servers added at run time).
SERVER_OPTIONS = "weight 1 maxconn 1000"
SERVER_SLOTS = 4  # servers declared per app backend; more replicas use `add server`
FREE_ADDRESS = "127.0.0.1:1"  # a free slot's placeholder (disabled, never used)


@attrs.frozen
class Layout:
    """Where the managed HAProxy keeps its files, all under one directory."""

    dir: str
    listen_host: str
    listen_port: int
    user: str | None = None  # the workers' when the master runs as root (haproxy_process.worker_user)
    threads: int = 1
    maxconn: int = 20000
    https_port: int = 0  # issue 16 item 3: the TLS frontend (0: none)
    per_source: int = 1000  # concurrent connections one client address may hold
    # Where the handover sockets live (router/haproxy_process.handover_dir):
    # "" renders no handover, and a settings reload closes idle clients.
    handover_dir: str = ""

    @property
    def conf_dir(self) -> str:
        return f"{self.dir}/conf.d"

    @property
    def main_conf(self) -> str:
        return f"{self.conf_dir}/00-main.cfg"

    @property
    def map_path(self) -> str:
        return f"{self.dir}/hosts.map"

    @property
    def admin_socket(self) -> str:
        return f"{self.dir}/admin.sock"

    @property
    def master_socket(self) -> str:
        return f"{self.dir}/master.sock"

    @property
    def pid(self) -> str:
        return f"{self.dir}/haproxy.pid"

    def owner(self, indent: str, sep: str) -> str:
        """The workers' `user U` and `group G`, joined by `sep` (the global
        section's lines, a unix bind's options); "" when not root."""
        if not self.user:
            return ""
        u, _, g = self.user.partition(" ")
        return indent + f"user {u}" + (f"{sep}{indent}group {g}" if g else "") + sep

    def handover_socket(self, scheme: str) -> str:
        return f"{self.handover_dir}/handover-{scheme}.sock"

    @property
    def worker_flags_map(self) -> str:
        """`last 1` in the workers of a proxy being stopped for good
        (HAProxyProcess.stop): they have no successor to hand over to."""
        return f"{self.dir}/worker-flags.map"

    def chunk_path(self, chunk: int) -> str:
        return f"{self.conf_dir}/50-slots-{chunk:04d}.cfg"

    # --- issue 16 item 3: TLS files (router/haproxy_tls.py writes them) ------
    @property
    def tls_dir(self) -> str:
        return f"{self.dir}/tls"

    @property
    def crt_list(self) -> str:
        return f"{self.tls_dir}/crt-list.txt"

    @property
    def default_cert(self) -> str:
        return f"{self.tls_dir}/default.pem"

    @property
    def acme_map(self) -> str:
        return f"{self.dir}/acme.map"

    @property
    def https_only_map(self) -> str:
        return f"{self.dir}/https-only.map"


def slot_backend(slot: int) -> str:
    return f"app{slot:05d}"


def slot_server_names(server_slots: int = SERVER_SLOTS) -> list[str]:
    return [f"s{i}" for i in range(1, server_slots + 1)]


def dynamic_server_name(host: str, port: int) -> str:
    """A server added beyond the slots (checked hosts: [0-9a-zA-Z.:[]-])."""
    return "d_" + re.sub(r"[^0-9A-Za-z]", "_", host) + f"_{int(port)}"


def normalize_hostname(name: str) -> str:
    """Hostnames are matched lowercased and without a trailing dot."""
    return name.strip().lower().rstrip(".")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_main(layout: Layout) -> str:
    """Global settings, the frontend, the 404 backend."""
    return f"""# Rendered by Shipway's router; edits are overwritten.
global
{layout.owner("    ", chr(10))}    pidfile {layout.pid}
    maxconn {layout.maxconn}
    # maxconn may exceed half the file limit (idle clients hold one
    # descriptor, router/haproxy_process.maxconn): start anyway.
    no strict-limits
    nbthread {max(1, layout.threads)}
    # Bad input (issue 16): a request's headers must fit one 16 KB buffer
    # (a 64 KB Host header gets a 400, memory per connection stays bounded:
    # an idle connection holds no buffer at all) and have at most 101 lines.
    tune.bufsize 16384
    tune.http.maxhdr 101
    # Route changes come through this socket, never through a reload;
    # expose-fd lets a settings reload take over the listening sockets.
    stats socket {layout.admin_socket} mode 600 level admin expose-fd listeners
    stats timeout 30s
    log stderr format raw local0 err
    # Issue 18: one access line per request to the logger (logger/router_lines.py)
    # through the in-memory ring below; the backend names the app.
    log ring@shipway_access local0 info

# The frontends and the router's own backends take these defaults; the app
# backends (the files after this one) take shipway_apps, below, which adds
# X-Forwarded-For. HAProxy 2.6 has no `no option forwardfor`, and a request
# handed over by a stopping worker (render_handover_backends) must reach the next
# worker without one: that worker adds the client's address itself.
defaults shipway_edge
    mode http
    log global
    # Only what the router line shows (logger/router_lines.py): each field
    # is formatted for every request.
    log-format "shipway-access %b %HM %{{+Q}}HU %ST %B %Ta %Tc %ci"
    option dontlognull
    timeout connect 5s
    # A client silent for 60 s mid-request or mid-response is cut.
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    # A client must send its complete request headers within 10 s of the
    # first byte or of opening the connection (slowloris, idle connections
    # that never send a request).
    timeout http-request 10s
    timeout http-keep-alive 65s
    # A replica that refuses the connection is skipped for another one. A
    # pooled connection the replica closed just as a request was sent on it
    # (http-reuse always, below) fails with an empty response: that request
    # is sent again, as nginx does, for idempotent methods only (HAProxy 2.6
    # would replay any method: the frontends disable it for the others).
    # Only requests that fit one buffer are replayed. No response-timeout:
    # a slow request is not sent twice.
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response
    # Any request, a client connection's first too, may take an idle pooled
    # connection to the replica (as nginx's upstream keepalive does). With
    # "safe", each new client connection opened a new one to the replica:
    # 2-2.5x nginx's CPU per request for clients that do not keep their
    # connection (router/README.md). The risk, a replica closing an idle
    # connection just as a request is sent on it, was already there for a
    # kept-alive client's later requests.
    http-reuse always
    http-error status 503 content-type text/html string {_quote(_NO_REPLICA_PAGE)}
    http-error status 502 content-type text/html string {_quote(_NO_REPLICA_PAGE)}

frontend shipway_http from shipway_edge
    bind {layout.listen_host}:{layout.listen_port}
{render_handover_bind(layout, "http")}{render_limits(layout)}{NO_REPLAY}{render_handover_mark(layout)}    http-request set-header X-Forwarded-Proto http
    # The bound port as a literal: %[dst_port] costs two system calls per
    # connection (getsockname, getsockopt SO_ORIGINAL_DST).
    http-request set-header X-Forwarded-Port {layout.listen_port}
    http-request set-header X-Request-Start t=%[date(0,ms)]
{render_tls_rules(layout)}{render_handover_rule(layout, "http")}    use_backend %[req.hdr(host),lower,word(1,:),regsub(\\.$,),map({layout.map_path})]
    default_backend {NOT_FOUND_BACKEND}
{render_https_frontend(layout)}
backend {NOT_FOUND_BACKEND} from shipway_edge
    http-request return status 404 content-type text/html string {_quote(_NOT_FOUND_PAGE)}

# Access lines are written into this in-memory ring; the logger pulls them
# over the admin socket (`show events shipway_access -w`,
# logger/router_lines.py). The ring has no `server`: HAProxy 2.6's
# forwarder reconnects in a tight loop while nothing listens (~4,700
# failed connects and up to 0.9 s of CPU a second with the logger
# stopped, tests/router/test_haproxy_idle.py). A datagram per line cost the
# router ~0.2x nginx's CPU per request (a send and a wake-up of the reader
# each) and lost lines beyond the socket's 512-datagram queue. Writing into
# the ring never blocks a request: with no reader the oldest lines are
# overwritten, a line that finds no room past a lagging reader is dropped
# (router/README.md).
ring shipway_access
    format raw
    maxlen 8192
    size 1048576
{render_handover_backends(layout)}
defaults shipway_apps from shipway_edge
    option forwardfor
"""


# retry-on empty-response replays only idempotent methods (see defaults).
NO_REPLAY = "    http-request disable-l7-retry if !{ method GET HEAD PUT DELETE OPTIONS TRACE }\n"


def frontend_maxconn(layout: Layout) -> int:
    return max(1, layout.maxconn - min(1000, layout.maxconn // 10))


def render_limits(layout: Layout) -> str:
    """A frontend's connection limits: all but a tenth (at most 1,000) of the
    proxy's connections (a flood on http leaves room for https and the
    reverse, and for the admin socket), and at most
    `per_source` at once from one client address (one host's 10,000 idle
    connections are refused at accept, other clients keep their room)."""
    return (f"    maxconn {frontend_maxconn(layout)}\n"
            "    stick-table type ipv6 size 200k expire 60s store conn_cur\n"
            "    tcp-request connection track-sc0 src\n"
            f"    tcp-request connection reject if {{ sc0_conn_cur gt {layout.per_source} }}\n")


def render_chunk(chunk: int, apps_by_slot: Mapping[int, tuple[str, Mapping[str, tuple[str, int]]]],
                 server_slots: int = SERVER_SLOTS) -> str:
    """One chunk of slot backends: (app, {server name: upstream}) per used slot.

    Each backend declares `server_slots` servers (s1, s2, ...), disabled
    until a replica takes one at run time (`set server ... addr`): HAProxy
    2.6 reuses idle upstream connections only for servers declared in the
    file, not for those added with `add server` (router/README.md). Servers
    beyond the slots (`d_...`, added at run time) are written too, so a
    restart restores them.
    """
    lines = [f"# Rendered by Shipway's router: slots {chunk * CHUNK}-{chunk * CHUNK + CHUNK - 1}."]
    for slot in range(chunk * CHUNK, chunk * CHUNK + CHUNK):
        app, servers = apps_by_slot.get(slot, (None, {}))
        lines.append(f"backend {slot_backend(slot)}" + (f"  # app {app}" if app else ""))
        lines.append("    balance roundrobin")
        for name in slot_server_names(server_slots):
            if name in servers:
                host, port = servers[name]
                lines.append(f"    server {name} {host}:{int(port)} {SERVER_OPTIONS}")
            else:
                lines.append(f"    server {name} {FREE_ADDRESS} {SERVER_OPTIONS} disabled")
        for name, (host, port) in sorted(servers.items()):
            if not name.startswith("s"):
                lines.append(f"    server {name} {host}:{int(port)} {SERVER_OPTIONS}")
    return "\n".join(lines) + "\n"


def render_map(entries: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{host} {backend}\n" for host, backend in entries)


# --- issue 16 items 3 and 4: the TLS frontend, ACME answers, HTTPS-only ------
_HOST = "req.hdr(host),lower,word(1,:),regsub(\\.$,)"


def render_tls_rules(layout: Layout) -> str:
    """Rules of the plain HTTP frontend: answer pending HTTP-01 tokens from
    `acme.map` (token -> key authorization, changed at run time), and
    redirect the hostnames in `https-only.map` to the https port."""
    if not layout.https_port:
        return ""
    port = "" if layout.https_port == 443 else f":{layout.https_port}"
    # A stopping worker's maps are those of before the reload: it hands
    # the request over instead (render_handover_mark).
    not_handed_over = f" !{{ {HANDED_OVER} }}" if layout.handover_dir else ""
    return (
        "    acl acme_path path_beg /.well-known/acme-challenge/\n"
        f"    http-request set-var(txn.acme) path,field(4,/),map({layout.acme_map}) if acme_path\n"
        "    http-request return status 200 content-type text/plain "
        f"lf-string %[var(txn.acme)] if acme_path {{ var(txn.acme) -m found }}{not_handed_over}\n"
        f"    http-request redirect code 301 location https://%[{_HOST}]{port}%[capture.req.uri] "
        f"if !acme_path {{ {_HOST},map({layout.https_only_map}) -m found }}{not_handed_over}\n")


def render_https_frontend(layout: Layout) -> str:
    """The TLS frontend: the certificate by SNI from the crt-list (changed at
    run time with `add ssl crt-list`), the default certificate for any other
    name; then the same routing by Host as plain HTTP."""
    if not layout.https_port:
        return ""
    return f"""
frontend shipway_https from shipway_edge
    bind {layout.listen_host}:{layout.https_port} ssl crt {layout.default_cert} crt-list {layout.crt_list} alpn http/1.1
{render_handover_bind(layout, "https")}{render_limits(layout)}{NO_REPLAY}{render_handover_mark(layout)}    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Port {layout.https_port}
    http-request set-header X-Request-Start t=%[date(0,ms)]
{render_handover_rule(layout, "https")}    use_backend %[{_HOST},map({layout.map_path})]
    default_backend {NOT_FOUND_BACKEND}
"""
