"""Custom domains: validated RFC 1123 host names, unique across all apps,
never under the platform's base domain (those names are Shipway's own)."""
from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from controller.access import lock_app
from controller.base import log
from controller.db import domains, now
from controller.errors import BadRequest, Conflict, NotFound
from controller.formation import FormationMixin
from controller.models import App, Domain, User

LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
MAX_DOMAINS_PER_APP = 100


def check_hostname(hostname: object, base_domain: str) -> str:
    if not isinstance(hostname, str):
        raise BadRequest("hostname must be a string")
    host = hostname.strip().lower().rstrip(".")
    labels = host.split(".")
    if (not host or len(host) > 253 or len(labels) < 2
            or not all(LABEL_RE.match(label) for label in labels)
            or labels[-1].isdigit()):
        raise BadRequest(f"invalid hostname {hostname[:80]!r}")
    if labels[-1] == "invalid":  # reserved (RFC 2606); the router's own probe is there
        raise BadRequest(f"{host} is under the reserved domain .invalid")
    base = base_domain.strip().lower().rstrip(".")
    if base and (host == base or host.endswith("." + base)):
        raise BadRequest(f"{host} is under the platform's domain {base}")
    return host


def to_domain(row: Any) -> Domain:
    return Domain(id=row.id, app_id=row.app_id, hostname=row.hostname,
                  created_at=row.created_at)


class DomainsMixin(FormationMixin):
    def list_domains(self, user: User, app: str) -> list[Domain]:
        with self.db.read() as conn:
            found = self._authorize(conn, user, app, "read")
            rows = conn.execute(sa.select(domains).where(domains.c.app_id == found.id)
                                .order_by(domains.c.hostname)).all()
        return [to_domain(r) for r in rows]

    def app_domains(self, app: App) -> list[str]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(domains.c.hostname).where(domains.c.app_id == app.id)
                                .order_by(domains.c.hostname)).all()
        return [r.hostname for r in rows]

    def _refresh_route(self, app: App) -> None:
        """Route the app's names as stored now. The change is stored either
        way: if the router fails now, supervision routes the app again."""
        if self._deployer is None:
            return
        try:
            self._deployer.refresh_route(app)
        except Exception:  # noqa: BLE001
            log.failure("controller: routing {app} failed; supervision retries", app=app.name)

    def add_domain(self, user: User, app: str, hostname: str) -> Domain:
        host = check_hostname(hostname, self.settings.base_domain)
        try:
            with self.db.write() as conn:
                found = self._authorize(conn, user, app, "write")
                lock_app(conn, found)
                if conn.execute(sa.select(domains.c.id).where(domains.c.hostname == host)).first():
                    raise Conflict(f"{host} is already in use")
                count = conn.execute(sa.select(sa.func.count()).select_from(domains)
                                     .where(domains.c.app_id == found.id)).scalar_one()
                if count >= MAX_DOMAINS_PER_APP:
                    raise BadRequest(f"too many domains (the limit is {MAX_DOMAINS_PER_APP} per app)")
                domain_id = conn.execute(domains.insert().values(
                    app_id=found.id, hostname=host, created_at=now())).inserted_primary_key[0]
                row = conn.execute(sa.select(domains).where(domains.c.id == domain_id)).one()
        except IntegrityError:
            raise Conflict(f"{host} is already in use") from None
        self._refresh_route(found)
        return to_domain(row)

    def remove_domain(self, user: User, app: str, hostname: str) -> None:
        host = hostname.strip().lower().rstrip(".") if isinstance(hostname, str) else ""
        with self.db.write() as conn:
            found = self._authorize(conn, user, app, "write")
            done = conn.execute(domains.delete().where(domains.c.app_id == found.id,
                                                       domains.c.hostname == host)).rowcount
        if not done:
            raise NotFound(f"{found.name} has no domain {host[:80]!r}")
        self._refresh_route(found)
