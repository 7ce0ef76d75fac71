"""Issue 16: `apps:info --json` carries the certificate of the app's own
name (APP.<base domain>) when ACME is on, null when it is off."""
from __future__ import annotations

import types

from controller.api_apps import app_info
from controller.api_views import Call
from controller.certificates import CertificateStore


def _info(store, owner, app) -> dict:
    services = types.SimpleNamespace(settings=store.settings, controller=store)
    return app_info(Call(services=services, user=owner, params={"app": app.name}, body=None))


def test_app_hostname_certificate_shown_with_acme(open_store):
    store = open_store(acme_directory="https://acme.invalid/directory", base_domain="shipway.test")
    owner = store.signup("owner@example.com", "owner-password")[0]
    app = store.create_app(owner, "demo-app")
    assert _info(store, owner, app)["certificate"] == {
        "status": "pending", "not_after": None, "error": None}  # not seen by the manager yet
    certs = CertificateStore(store.db, store.keyring)
    certs.reconcile({"demo-app.shipway.test": app.id, "other.example": app.id})
    certs.record_failure("demo-app.shipway.test", "rate limited")
    cert = _info(store, owner, app)["certificate"]
    assert cert["status"] == "failed" and cert["error"] == "rate limited"


def test_no_certificate_without_acme(store, owner, app):
    assert _info(store, owner, app)["certificate"] is None
