"""What a restarted or adopted HAProxy router reads back: the routes kept
in the slot chunk files and the host map it writes after each change (the
router's only state, so a proxy killed or a server restarted comes back with
the same routes)."""
from __future__ import annotations

import re
from pathlib import Path

import attrs

from router.haproxy_conf import Layout, slot_backend
from router.interface import Route

_BACKEND_LINE = re.compile(r"^backend (app\d{5})(?:  # app (\S+))?$")
_SERVER_LINE = re.compile(r"^    server (\S+) (\S+):(\d+) (?!.* disabled$)")


@attrs.frozen
class SavedRoutes:
    routes: dict[str, Route]
    servers: dict[str, dict[tuple[str, int], str]]  # app -> upstream -> server name
    slots: dict[str, int]  # app -> its slot backend's number
    chunks: int  # chunk files found


def read_text(path: str) -> str:
    """A file's text, or "" when it is not there (yet)."""
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def read_saved_routes(layout: Layout) -> SavedRoutes:
    servers: dict[str, dict[tuple[str, int], str]] = {}
    slots: dict[str, int] = {}
    chunks = 0
    for path in sorted(Path(layout.conf_dir).glob("50-slots-*.cfg")):
        chunks += 1
        current = None
        for line in path.read_text().splitlines():
            m = _BACKEND_LINE.match(line)
            if m:
                current = m.group(2)
                if current:
                    slots[current], servers[current] = int(m.group(1)[3:]), {}
                continue
            m = _SERVER_LINE.match(line)
            if m and current:
                servers[current][(m.group(2), int(m.group(3)))] = m.group(1)
    names: dict[str, list[str]] = {a: [] for a in servers}
    by_backend = {slot_backend(s): a for a, s in slots.items()}
    for line in read_text(layout.map_path).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in by_backend:
            names[by_backend[parts[1]]].append(parts[0])
    routes = {a: Route(app=a, hostnames=names[a], upstreams=list(u)) for a, u in servers.items()}
    return SavedRoutes(routes=routes, servers=servers, slots=slots, chunks=chunks)
