"""API handlers for `certs` and `certs:auto:refresh` (issue 16 item 3):
each name an app is routed under with its ACME certificate, and a refresh
that makes them due now, as Heroku's `certs:auto:refresh`.

A user whose issuance failed (DNS was wrong, then fixed) need not wait out
the backoff, and an operator can force a renewal. The certificate object is
the one `domains --json` shows (api_views.certificate_statuses); the store
change is controller/certificates_refresh.py's: a name tried, refreshed or
issued less than `cert_refresh_interval` seconds ago is refused with a 429
and Retry-After (one ACME account serves every app), and so is a refresh
past `cert_refreshes_per_hour` names refreshed on that account in the last
hour by any app, or past a third of those for the apps of the app's owner
(so one user cannot lock the others out); a row changed by the server
meanwhile is a 409.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from controller.api_views import Call, certificate_statuses
from controller.certificates import acme_enabled
from controller.certificates_refresh import AccountLimit, refresh, wake_managers
from controller.domains import normalize_hostname
from controller.errors import Conflict, NotFound
from controller.models import App

ACME_OFF = ("automatic certificates are off on this server "
            "(it has no SHIPWAY_ACME_DIRECTORY)")


def _routed(call: Call, app: App) -> list[str]:
    """The names the router serves the app under, as the certificate
    manager sees them (certificates.routed_names): APP.<base domain> first,
    then each verified custom domain."""
    return [call.services.settings.app_hostname(app.name)] + call.controller.app_domains(app)


def list_certs(call: Call) -> list[dict[str, Any]]:
    """Each routed name with its certificate (null when ACME is off)."""
    app = call.controller.get_app(call.me, call.params["app"])
    names = _routed(call, app)
    certs = certificate_statuses(call, names)
    return [{"hostname": h, "certificate": certs.get(h)} for h in names]


def _chosen(call: Call, app: App, names: list[str], wanted: str) -> list[str]:
    """[wanted] if the app is routed under it; else 404 (not the app's) or
    409 (the app's, waiting for its DNS proof), as the domains routes."""
    host = normalize_hostname(wanted)
    if host in names:
        return [host]
    if any(d.hostname == host for d in call.controller.list_domains(call.me, app.name)):
        raise Conflict(f"{host} is not verified yet: it gets a certificate once "
                       f"`shipway domains:verify {host}` succeeds")
    raise NotFound(f"{app.name} has no domain {host[:80]!r}")


def refresh_certs(call: Call) -> dict[str, Any]:
    """Make the app's names (or the body's `hostname`) due now: a failed or
    pending name is tried at once, an issued one renewed (the old
    certificate is served until the new one is stored). Wakes this
    process's certificate manager; answers what was queued. 429 (with
    Retry-After) if a name was tried or refreshed too recently, or if the
    server's ACME account, or the app owner's share of it, had its
    refreshes of the hour."""
    controller = call.controller
    app = controller.get_app(call.me, call.params["app"], "write")
    settings = call.services.settings
    if not acme_enabled(settings.acme_directory, settings.base_domain):
        raise Conflict(ACME_OFF)
    names = _routed(call, app)
    wanted = call.field("hostname", str, required=False)
    if wanted is not None:
        names = _chosen(call, app, names, wanted)
    interval = dt.timedelta(seconds=settings.cert_refresh_interval)
    account = AccountLimit(settings.acme_directory or "", settings.cert_refreshes_per_hour,
                           owner_id=app.owner_id)  # the owner's share, whoever asks
    with controller.db.write() as conn:
        queued = refresh(conn, app.id, names, interval, account=account)
        controller.record_activity(app, call.me.email, "certs:auto:refresh",
                                   f"refreshed certificates of {', '.join(names)}"[:500],
                                   {"hostnames": names}, conn=conn)
    woken = wake_managers() > 0
    certs = certificate_statuses(call, names)
    return {"app": app.name, "woken": woken,
            "queued": [{"hostname": h, "action": queued[h], "certificate": certs[h]}
                       for h in names]}
