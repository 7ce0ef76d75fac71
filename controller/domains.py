"""Custom domains: validated RFC 1123 host names, unique across all apps,
never under the platform's base domain (those names are Shipway's own).

Ownership: a hostname is refused when an app of another owner holds any
name in the same registrable domain (eTLD+1, see domain_ownership). The
account that holds a name is the owner of the app it is on; a collaborator
adds names for that owner's app, so names of one registrable domain may
spread over several apps of one owner, never over two owners.
With SHIPWAY_DOMAIN_VERIFY=dns a name is added unverified, is not routed,
and holds nothing until its TXT challenge is found (verify_domain)."""
from __future__ import annotations

import re
from typing import Any

import idna

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from sqlalchemy.engine import Connection

from controller.access import lock_app
from controller.base import log
from controller.db import advisory_lock, apps, domains, now
from controller.domain_ownership import (
    challenge_name, challenge_token, registrable_domain, txt_values,
)
from controller.errors import BadRequest, Conflict, NotFound
from controller.formation import FormationMixin
from controller.models import App, Domain, User

LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
MAX_DOMAINS_PER_APP = 100


def normalize_hostname(hostname: object) -> str:
    """The stored form of a name a user typed: trimmed, lowercased, without a
    trailing dot, IDNA names (bücher.example) as their punycode A-labels
    (xn--bcher-kva.example), the only form DNS, SNI, ACME and the router's
    Host match know. Raises BadRequest with a one-line reason."""
    if not isinstance(hostname, str):
        raise BadRequest("hostname must be a string")
    shown = hostname[:80]
    host = hostname.strip().rstrip(".")
    if "*" in host:
        raise BadRequest(f"wildcard hostnames are not supported ({shown!r}): "
                         "add each name separately")
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as e:
            raise BadRequest(f"invalid internationalized hostname {shown!r}: {e}") from None
    elif "xn--" in host.lower():  # an A-label must decode (punycode typed by hand)
        try:
            idna.decode(host.lower())
        except (idna.IDNAError, UnicodeError) as e:
            raise BadRequest(f"invalid internationalized hostname {shown!r}: {e}") from None
    return host.lower()


def check_hostname(hostname: object, base_domain: str) -> str:
    host = normalize_hostname(hostname)
    labels = host.split(".")
    if len(host) > 253:
        raise BadRequest(f"hostname too long ({len(host)} characters; at most 253)")
    if (not host or len(labels) < 2
            or not all(LABEL_RE.match(label) for label in labels)
            or labels[-1].isdigit()):
        raise BadRequest(f"invalid hostname {str(hostname)[:80]!r}")
    if labels[-1] == "invalid":  # reserved (RFC 2606); the router's own probe is there
        raise BadRequest(f"{host} is under the reserved domain .invalid")
    base = base_domain.strip().lower().rstrip(".")
    if base and (host == base or host.endswith("." + base)):
        raise BadRequest(f"{host} is under the platform's domain {base}")
    return host


def _lookup_name(hostname: object) -> str:
    """The stored form of a name to find (verify, remove); '' if unusable."""
    try:
        return normalize_hostname(hostname)
    except BadRequest:
        return ""


def to_domain(row: Any, challenge: tuple[str, str] | None = None) -> Domain:
    return Domain(id=row.id, app_id=row.app_id, hostname=row.hostname,
                  created_at=row.created_at, verified=row.verified_at is not None,
                  challenge=challenge if row.verified_at is None else None)


def _claims(conn: Connection, host: str, owner_id: int, verified_only: bool) -> list[Any]:
    """Rows of other owners' apps in `host`'s registrable domain. The LIKE
    narrows (hostnames hold no LIKE wildcards: `_` and `%` fail the label
    rule); the PSL decides."""
    reg = registrable_domain(host)
    query = (sa.select(domains.c.id, domains.c.hostname, domains.c.verified_at,
                       apps.c.owner_id)
             .join(apps, apps.c.id == domains.c.app_id)
             .where(sa.or_(domains.c.hostname == reg,
                           domains.c.hostname.like("%." + reg)),
                    apps.c.owner_id != owner_id))
    if verified_only:
        query = query.where(domains.c.verified_at.is_not(None))
    return [r for r in conn.execute(query).all() if registrable_domain(r.hostname) == reg]


class DomainsMixin(FormationMixin):
    def list_domains(self, user: User, app: str) -> list[Domain]:
        with self.db.read() as conn:
            found = self._authorize(conn, user, app, "read")
            rows = conn.execute(sa.select(domains).where(domains.c.app_id == found.id)
                                .order_by(domains.c.hostname)).all()
        return [to_domain(r, self._challenge(found.id, r.hostname)) for r in rows]

    def app_domains(self, app: App) -> list[str]:
        """The names the router serves the app under: verified ones only."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(domains.c.hostname).where(
                domains.c.app_id == app.id, domains.c.verified_at.is_not(None))
                .order_by(domains.c.hostname)).all()
        return [r.hostname for r in rows]

    @property
    def _verify_dns(self) -> bool:
        return getattr(self.settings, "domain_verify", "off") == "dns"

    def _challenge(self, app_id: int, host: str) -> tuple[str, str]:
        return challenge_name(host), challenge_token(self.api_key_secret, app_id, host)

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
        registrable_domain(host)  # a public suffix is refused before any lookup
        verify = self._verify_dns
        try:
            with self.db.write() as conn:
                found = self._authorize(conn, user, app, "write")
                lock_app(conn, found)
                self._refuse_foreign(conn, found, host, verified_only=verify)
                existing = conn.execute(sa.select(domains.c.app_id, domains.c.verified_at,
                                                  apps.c.owner_id)
                                        .join(apps, apps.c.id == domains.c.app_id)
                                        .where(domains.c.hostname == host)).first()
                if existing is not None:
                    if not (verify and existing.verified_at is None
                            and existing.owner_id != found.owner_id):
                        raise Conflict(f"{host} is already in use")
                    # An unproven claim of another account holds nothing:
                    # whoever proves the name first gets it.
                    conn.execute(domains.delete().where(domains.c.hostname == host))
                count = conn.execute(sa.select(sa.func.count()).select_from(domains)
                                     .where(domains.c.app_id == found.id)).scalar_one()
                if count >= MAX_DOMAINS_PER_APP:
                    raise BadRequest(f"too many domains (the limit is {MAX_DOMAINS_PER_APP} per app)")
                created = now()
                domain_id = conn.execute(domains.insert().values(
                    app_id=found.id, hostname=host, created_at=created,
                    verified_at=None if verify else created)).inserted_primary_key[0]
                self.record_activity(found, user.email, "domains:add",  # issue 18
                                     f"added domain {host}", {"hostname": host}, conn=conn)
                row = conn.execute(sa.select(domains).where(domains.c.id == domain_id)).one()
        except IntegrityError:
            raise Conflict(f"{host} is already in use") from None
        if verify:
            return to_domain(row, self._challenge(found.id, host))
        self._refresh_route(found)
        return to_domain(row)

    def _refuse_foreign(self, conn: Connection, app: App, host: str,
                        verified_only: bool) -> None:
        """Conflict when another account holds a name in `host`'s
        registrable domain (the message names the domain, not their name).
        On PostgreSQL, claims of one registrable domain queue on an advisory
        lock (two apps' row locks would not); SQLite's write lock covers it."""
        advisory_lock(conn, "shipway-domain:" + registrable_domain(host))
        if _claims(conn, host, app.owner_id, verified_only):
            reg = registrable_domain(host)
            log.info("controller: {host} refused for {app}: {reg} is another account's",
                     host=host, app=app.name, reg=reg)
            raise Conflict(f"{reg} belongs to another account")

    def verify_domain(self, user: User, app: str, hostname: str) -> Domain:
        """Look up the name's TXT challenge (SHIPWAY_DOMAIN_VERIFY=dns) and,
        when it holds the app's token, mark the name verified and route it.
        Idempotent for a verified name."""
        host = _lookup_name(hostname)
        with self.db.read() as conn:
            found = self._authorize(conn, user, app, "write")
            row = conn.execute(sa.select(domains).where(domains.c.app_id == found.id,
                                                        domains.c.hostname == host)).first()
        if row is None:
            raise NotFound(f"{found.name} has no domain {host[:80]!r}")
        if row.verified_at is not None:
            return to_domain(row)
        name, token = self._challenge(found.id, host)
        # The lookup runs outside any transaction: it may take seconds.
        values, why = txt_values(name, getattr(self.settings, "dns_server", None))
        if token not in values:
            why = why or "a TXT record with another value"
            raise BadRequest(f"{host} is not verified: create a TXT record {name} with the "
                             f"value {token} (DNS has {why}), then verify again")
        with self.db.write() as conn:
            lock_app(conn, found)
            self._refuse_foreign(conn, found, host, verified_only=True)
            conn.execute(domains.update().where(domains.c.id == row.id)
                         .values(verified_at=now()))
            row = conn.execute(sa.select(domains).where(domains.c.id == row.id)).first()
        if row is None:
            raise NotFound(f"{found.name} has no domain {host[:80]!r}")
        log.info("controller: {host} verified for {app}", host=host, app=found.name)
        self._refresh_route(found)
        return to_domain(row)

    def remove_domain(self, user: User, app: str, hostname: str) -> None:
        host = _lookup_name(hostname)
        with self.db.write() as conn:
            found = self._authorize(conn, user, app, "write")
            done = conn.execute(domains.delete().where(domains.c.app_id == found.id,
                                                       domains.c.hostname == host)).rowcount
            if done:
                self.record_activity(found, user.email, "domains:remove",  # issue 18
                                     f"removed domain {host}", {"hostname": host}, conn=conn)
        if not done:
            raise NotFound(f"{found.name} has no domain {host[:80]!r}")
        self._refresh_route(found)
