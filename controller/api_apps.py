"""API handlers for apps and everything under `/api/apps/{app}`.

Permissions are the controller's job (it gets the caller with every call);
these handlers only check the shape of the input and shape the output.
Deploys (config change, rollback, scale, restart) run to the end inside the
request thread, and the answer carries the release and the progress lines.
"""
from __future__ import annotations

import re
from typing import Any

from controller.api_follow import batch_ndjson
from controller.api_views import (
    Call, Follow, app_certificate, app_json, build_json, certificate_statuses, domain_json,
    output_collector, release_json, replica_json, size_json,
)
from controller.errors import BadRequest, TooManyRequests
from controller.ssh_host_keys import public_host_key
from logger.feed import LogFeed


def list_apps(call: Call) -> list[dict[str, Any]]:
    settings = call.services.settings
    return [app_json(settings, a, call.me) for a in call.controller.list_apps(call.me)]


def create_app(call: Call) -> dict[str, Any]:
    app = call.controller.create_app(call.me, call.field("name", str, required=False))
    return app_json(call.services.settings, app, call.me)


def app_info(call: Call) -> dict[str, Any]:
    controller = call.controller
    app = controller.get_app(call.me, call.params["app"])
    current = controller.current_release(app)
    info = app_json(call.services.settings, app, call.me)
    info.update({
        "version": current.version if current else None,
        "release": release_json(current),
        "formation": controller.get_formation(app),
        "replica_size": size_json(call.services.settings, app),
        "domains": controller.app_domains(app),
        # What `ps:ssh` pins: every replica of the app presents this key.
        "ssh_host_key": public_host_key(controller.ssh_host_key(app)),
        "certificate": app_certificate(call, app),  # issue 16: APP.<base domain>'s (null: no ACME)
    })
    return info


def destroy_app(call: Call) -> dict[str, Any]:
    call.controller.destroy_app(call.me, call.params["app"])
    return {"ok": True, "name": call.params["app"]}


# --- config -----------------------------------------------------------------

def get_config(call: Call) -> dict[str, Any]:
    return {"config": call.controller.get_config(call.me, call.params["app"])}


def set_config(call: Call) -> dict[str, Any]:
    values = call.body or {}
    if not values:
        raise BadRequest('nothing to set: send {"NAME": "value", ...}')
    for name, value in values.items():
        if not isinstance(value, str):
            raise BadRequest(f"config value of {name[:80]!r} must be a string")
    lines, output = output_collector(call.progress)
    release = call.controller.set_config(call.me, call.params["app"], dict(values), output)
    return _config_answer(call, release, lines)


def unset_config(call: Call) -> dict[str, Any]:
    keys = call.field("keys", list)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise BadRequest("field 'keys' must be a non-empty list of strings")
    lines, output = output_collector(call.progress)
    release = call.controller.unset_config(call.me, call.params["app"], list(keys), output)
    return _config_answer(call, release, lines)


def _config_answer(call: Call, release: Any, lines: list[str]) -> dict[str, Any]:
    return {"config": call.controller.get_config(call.me, call.params["app"]),
            "release": release_json(release), "log": lines}


# --- releases -----------------------------------------------------------------

def list_releases(call: Call) -> list[dict[str, Any]]:
    return [release_json(r) for r in call.controller.list_releases(call.me, call.params["app"])]


def rollback(call: Call) -> dict[str, Any]:
    version = call.field("version", int, required=False)
    if version is not None and version < 1:
        raise BadRequest("field 'version' must be a release number (1 or more)")
    lines, output = output_collector(call.progress)
    release = call.controller.rollback(call.me, call.params["app"], version, output)
    return {"release": release_json(release), "log": lines}


# --- processes -------------------------------------------------------------------

def ps(call: Call) -> dict[str, Any]:
    app = call.controller.get_app(call.me, call.params["app"])
    replicas = call.services.runner.replicas(app.name)
    oneoffs = call.services.runner.oneoffs(app.name)  # issue 18: running one-offs
    return {"formation": call.controller.get_formation(app),
            "replica_size": size_json(call.services.settings, app),
            "replicas": [replica_json(r) for r in replicas],
            "oneoffs": [replica_json(r) for r in oneoffs]}


def scale(call: Call) -> dict[str, Any]:
    counts = call.body or {}
    if not counts:
        raise BadRequest('nothing to scale: send {"web": N, ...}')
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise BadRequest(f"replica count of {name[:80]!r} must be a whole number >= 0")
    lines, output = output_collector(call.progress)
    formation = call.controller.scale(call.me, call.params["app"], dict(counts), output)
    return {"formation": formation, "log": lines}


def resize(call: Call) -> dict[str, Any]:
    """Each replica's size: {"size": GiB} (also its CPUs), or null for the
    server's defaults. The replicas are replaced at the new size."""
    if not isinstance(call.body, dict) or "size" not in call.body:
        raise BadRequest('send {"size": N} (GiB of memory and CPUs) or {"size": null}')
    lines, output = output_collector(call.progress)
    app = call.controller.resize(call.me, call.params["app"], call.body["size"], output)
    return {"replica_size": size_json(call.services.settings, app), "log": lines}


def restart(call: Call) -> dict[str, Any]:
    lines, output = output_collector(call.progress)
    call.controller.restart(call.me, call.params["app"], output)
    return {"ok": True, "log": lines}


# --- domains, collaborators, builds ------------------------------------------------

def list_domains(call: Call) -> list[dict[str, Any]]:
    found = call.controller.list_domains(call.me, call.params["app"])
    certs = certificate_statuses(call, [d.hostname for d in found])  # issue 16
    return [domain_json(d, certs.get(d.hostname)) for d in found]


def add_domain(call: Call) -> dict[str, Any]:
    hostname = call.field("hostname", str)
    return domain_json(call.controller.add_domain(call.me, call.params["app"], hostname))


def verify_domain(call: Call) -> dict[str, Any]:
    return domain_json(call.controller.verify_domain(call.me, call.params["app"],
                                                     call.params["hostname"]))


def remove_domain(call: Call) -> dict[str, Any]:
    call.controller.remove_domain(call.me, call.params["app"], call.params["hostname"])
    return {"ok": True}


def list_collaborators(call: Call) -> list[dict[str, Any]]:
    emails = call.controller.list_collaborators(call.me, call.params["app"])
    return [{"email": e} for e in emails]


def add_collaborator(call: Call) -> dict[str, Any]:
    email = call.field("email", str)
    call.controller.add_collaborator(call.me, call.params["app"], email)
    return {"email": email.strip().lower()}


def remove_collaborator(call: Call) -> dict[str, Any]:
    call.controller.remove_collaborator(call.me, call.params["app"], call.params["email"])
    return {"ok": True}


def list_builds(call: Call) -> list[dict[str, Any]]:
    return [build_json(b) for b in call.controller.list_builds(call.me, call.params["app"])]


# --- logs ----------------------------------------------------------------------------
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # issue 18: --source


def logs(call: Call) -> dict[str, Any] | Follow:
    """`?lines=N` (1..history, default 100) of history; `?follow=true`
    streams on as NDJSON, history first; `?source=X` keeps one source
    (app, shipway, router, build, deploy, release, a process type or one
    process: logger.store.LogLine.matches)."""
    app = call.controller.get_app(call.me, call.params["app"])
    store = call.services.logs
    if store is None:
        raise NotImplementedError("no log store on this server")
    raw = call.query.get("lines", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= store.lines_per_app:
        raise BadRequest(f"lines must be a whole number from 1 to {store.lines_per_app}")
    lines = int(raw)
    source = call.query.get("source") or None
    if source is not None and not _SOURCE.fullmatch(source):
        raise BadRequest("source must be app, shipway, router, build, deploy, release, "
                         "a process type or a process (letters, digits, - _ .)")
    follow = call.query.get("follow", "").lower()
    if follow not in ("", "0", "1", "false", "true"):
        raise BadRequest("follow must be true or false")
    if follow not in ("1", "true"):
        return {"lines": [line.format() for line in store.tail(app.name, lines, source)]}
    feed = LogFeed()

    def put(lines: list[Any]) -> None:  # a batch's lines: the same list for all followers
        feed.put_many(lines if source is None else [x for x in lines if x.matches(source)])
    try:
        stop = store.subscribe(app.name, put, batches=True)
    except ValueError as e:
        raise TooManyRequests(f"{e}; try again later") from None
    # Subscribed before reading the history: a line added in between is in
    # both, and is sent once, with the history (the feed leaves out every
    # line up to the history's last, however late the fan-out hands it on).
    history = store.tail(app.name, lines, source)
    first = [line.format() for line in history]
    sent = history[-1].seq if history else 0
    # A batch's lines encoded once for all its followers, handed over in one
    # call (controller/api_follow.py); the sink takes a list of NDJSON lines.
    return Follow(first=first, stop=stop,
                  attach=lambda sink: feed.attach(
                      lambda lines: sink(batch_ndjson(lines)), after=sent))  # type: ignore[arg-type]


# --- issue 16, item 5: maintenance mode and canary (controller/maintenance.py) ---

def _overlays(call: Call) -> Any:
    from controller.maintenance import RouteOverlays

    return RouteOverlays(call.controller, getattr(call.services, "router", None))


def get_maintenance(call: Call) -> dict[str, Any]:
    return _overlays(call).status(call.me, call.params["app"])


def set_maintenance(call: Call) -> dict[str, Any]:
    on = call.field("maintenance", bool)
    return _overlays(call).set_maintenance(call.me, call.params["app"], on)


def set_canary(call: Call) -> dict[str, Any]:
    canary = call.field("canary", str)
    weight = call.field("weight", int)
    return _overlays(call).set_canary(call.me, call.params["app"], canary, weight)


def unset_canary(call: Call) -> dict[str, Any]:
    return _overlays(call).set_canary(call.me, call.params["app"], None)


# --- issue 18, item 4: log drains (controller/drains.py, logger/drains.py) ---
def _drains(call: Call) -> Any:
    drains = getattr(call.services.logs, "drains", None)
    if drains is None:
        raise NotImplementedError("no log drains on this server")
    return drains


def list_drains(call: Call) -> list[dict[str, Any]]:
    return _drains(call).list(call.me, call.params["app"])


def add_drain(call: Call) -> dict[str, Any]:
    return _drains(call).add(call.me, call.params["app"], call.field("url", str))


def remove_drain(call: Call) -> dict[str, Any]:
    _drains(call).remove(call.me, call.params["app"], call.params["drain"])
    return {"ok": True}
# --- end issue 18, item 4 ---
