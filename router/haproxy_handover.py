"""The settings reload that drops nothing (issue 16 item 1): the lines of
`00-main.cfg` that hand a stopping worker's idle clients over to the new
worker. Pure functions, as router/haproxy_conf.py (which calls them).

A reload starts a new worker with the new settings; the old one is told to
stop. HAProxy 2.6's old worker would close its idle kept-alive client
connections at once, failing each such client's next request. Instead it
keeps them (`option idle-close-on-response`) and hands each one's next
request over to the new worker through a unix socket that worker listens
on (the PROXY protocol carries the client's address), then closes the
connection after the answer. The old worker routes nothing to an app
itself: its routes are those of before the reload, and route changes
reach only the new worker. A proxy stopped for good has no new worker:
HAProxyProcess.stop() marks its workers `last` first (they then serve an
idle client's next request themselves, and close), and ends them once no
request is in flight, so that a stop does not wait for idle clients.
Where the sockets live, and who may reach them: haproxy_process
(handover_dir, worker_user).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.haproxy_conf import Layout

HANDOVER_BACKEND = "shipway_handover_{scheme}"
HANDED_OVER = "var(txn.handover) -m bool"


def render_handover_bind(layout: Layout, scheme: str) -> str:
    """The frontend's second listener, for requests a stopping worker hands
    over (no TLS: the old worker has decrypted them already), and the option
    that keeps idle clients across a reload. The per-client limit does not
    see these connections (`tcp-request connection` rules see the unix
    peer, not the PROXY address): each is one the old worker had accepted
    and counted."""
    if not layout.handover_dir:
        return ""
    # Owned by the workers: they connect to it, not the master that binds it.
    return (f"    bind unix@{layout.handover_socket(scheme)} accept-proxy "
            f"{layout.owner('', ' ')}mode 600\n"
            "    option idle-close-on-response\n")


def render_handover_mark(layout: Layout) -> str:
    """Decided once per request, before any rule that answers by itself
    (HTTP-01, the HTTPS-only redirect): `stopping` is false in a running
    worker, so this costs one test per request."""
    if not layout.handover_dir:
        return ""
    return ("    http-request set-var(txn.handover) bool(1) if { stopping } "
            f"!{{ str(last),map({layout.worker_flags_map}) -m found }}\n")


def render_handover_rule(layout: Layout, scheme: str) -> str:
    if not layout.handover_dir:
        return ""
    return (f"    use_backend {HANDOVER_BACKEND.format(scheme=scheme)} "
            f"if {{ stopping }} {{ {HANDED_OVER} }}\n")


def render_handover_backends(layout: Layout) -> str:
    """One per frontend, so that the request reaches its twin (the https one
    sets X-Forwarded-Proto https). A connection that sent a PROXY header is
    never given to another client."""
    if not layout.handover_dir:
        return ""
    schemes = ["http"] + (["https"] if layout.https_port else [])
    return "".join(f"""
backend {HANDOVER_BACKEND.format(scheme=scheme)} from shipway_edge
    server next unix@{layout.handover_socket(scheme)} send-proxy-v2
""" for scheme in schemes)
