"""Apps: names, creation, lookup, per-app secrets and destruction."""
from __future__ import annotations

import json
import re
import secrets
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from controller.access import AccessMixin, app_select, lock_user, not_found, to_app
from controller.base import log
from controller.db import apps, collaborators, now
from controller.errors import BadRequest, Conflict
from controller.models import App, AppSecrets, User
from controller.ssh_host_keys import new_host_key

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]\Z")
# Names an app may not take, because APP.<base domain> would pose as part of
# the platform or as a name clients trust without asking: the platform's own
# endpoints (api, git, ssh, the dashboard and status pages), mail and the
# names mail clients, browsers and Windows probe on their own (autoconfig,
# autodiscover, mta-sts, wpad, isatap), name servers, and "localhost". The
# first label of the server's public host name is added when it lies under
# the base domain (see `reserved_names`); SHIPWAY_RESERVED_APP_NAMES adds more.
RESERVED_NAMES = frozenset({
    "api", "www", "admin", "git", "ssh", "mail", "router", "status", "shipway", "localhost",
    "app", "apps", "dashboard", "console", "login", "auth", "account", "accounts", "docs",
    "help", "support", "static", "assets", "cdn", "registry", "metrics", "logs",
    "smtp", "imap", "pop", "pop3", "mx", "webmail", "autoconfig", "autodiscover", "mta-sts",
    "wpad", "isatap", "dns", "ns", "ns1", "ns2", "ns3", "ns4", "ftp", "acme", "root",
})
_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind",
               "lively", "mighty", "nimble", "proud", "quiet", "rapid", "shiny", "sunny",
               "swift", "tidy", "vivid", "witty", "bold", "crisp", "frosty", "golden")
_NOUNS = ("anchor", "harbor", "beacon", "canal", "delta", "fjord", "galleon", "island",
          "jetty", "keel", "lagoon", "mast", "oar", "pier", "reef", "sail", "tide",
          "voyage", "wharf", "buoy", "cove", "dinghy", "ferry", "lighthouse")


def check_app_name(name: object) -> str:
    """A DNS label: lowercase letters, digits and hyphens, starting with a
    letter, 3–30 characters, no trailing hyphen (it becomes a host name)."""
    if not isinstance(name, str):
        raise BadRequest("app name must be a string")
    name = name.strip().lower()
    if not NAME_RE.match(name) or "--" in name:
        raise BadRequest(
            f"invalid app name {name[:40]!r}: use 3-30 lowercase letters, digits and "
            "single hyphens, starting with a letter and not ending with a hyphen")
    return name


def reserved_names(settings: object) -> frozenset[str]:
    """The built-in list, the operator's additions, and the label an app
    would share with the platform's own host names under the base domain
    (public_host `deploy.example.com`, base domain `example.com`: `deploy`)."""
    names = set(RESERVED_NAMES)
    extra = str(getattr(settings, "reserved_app_names", "") or "")
    names.update(n.strip().lower() for n in extra.split(",") if n.strip())
    base = str(getattr(settings, "base_domain", "") or "").lower().strip(".")
    for host in (getattr(settings, "public_host", ""), getattr(settings, "bind_host", "")):
        host = str(host or "").lower().strip(".")
        if base and host.endswith("." + base):
            names.add(host[: -len(base) - 1].rsplit(".", 1)[-1])
    return frozenset(names)


def check_not_reserved(name: str, settings: object) -> str:
    if name in reserved_names(settings):
        raise BadRequest(f"the app name {name!r} is reserved (it would be "
                         f"{name}.<base domain>, a name of the platform or one clients "
                         "trust on their own); choose another name")
    return name


def generate_name() -> str:
    return (f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-"
            f"{secrets.randbelow(9000) + 1000}")


def _node_basename(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)


class AppsMixin(AccessMixin):
    def create_app(self, user: User, name: str | None = None) -> App:
        if name is not None and not (isinstance(name, str) and name.strip() == ""):
            wanted: str | None = check_not_reserved(check_app_name(name), self.settings)
        else:
            wanted = None
        limit = self.settings.limits.apps_per_user
        for _ in range(20 if wanted is None else 1):
            candidate = wanted or generate_name()
            try:
                with self.db.write() as conn:
                    lock_user(conn, user)  # the count below holds under concurrency
                    owned = conn.execute(sa.select(sa.func.count()).select_from(apps)
                                         .where(apps.c.owner_id == user.id)).scalar_one()
                    if owned >= limit:
                        raise BadRequest(f"too many apps (the limit is {limit} per user)")
                    if conn.execute(sa.select(apps.c.id).where(apps.c.name == candidate)).first():
                        if wanted:
                            raise Conflict(f"the app name {candidate} is taken")
                        continue
                    app_id = conn.execute(apps.insert().values(
                        name=candidate, owner_id=user.id, created_at=now(),
                    )).inserted_primary_key[0]
                    conn.execute(apps.update().where(apps.c.id == app_id).values(
                        secrets_ct=self._new_secrets(app_id, candidate)))
                    return to_app(conn.execute(app_select().where(apps.c.id == app_id)).one())
            except IntegrityError:
                if wanted:
                    raise Conflict(f"the app name {candidate} is taken") from None
        raise Conflict("could not find a free app name; please choose one")

    def list_apps(self, user: User) -> list[App]:
        mine = sa.or_(apps.c.owner_id == user.id, apps.c.id.in_(
            sa.select(collaborators.c.app_id).where(collaborators.c.user_id == user.id)))
        with self.db.read() as conn:
            rows = conn.execute(app_select().where(mine).order_by(apps.c.name)).all()
        return [to_app(r) for r in rows]

    def app_by_name(self, name: str) -> App:
        with self.db.read() as conn:
            return self._find_app(conn, name)

    def all_apps(self) -> list[App]:
        with self.db.read() as conn:
            return [to_app(r) for r in conn.execute(app_select().order_by(apps.c.name)).all()]

    def on_destroy(self, hook: Callable[[App], None]) -> None:
        with self._hooks_lock:
            self._destroy_hooks.append(hook)

    def destroy_app(self, user: User, name: str) -> None:
        """Owner only. The deployer stops the app first (its failure stops
        the destroy, so it can be retried); cleanup hooks then run, each
        failure logged and skipped; finally every row of the app goes."""
        app = self.get_app(user, name, "owner")
        if self._deployer is not None:
            self._deployer.destroy(app)
        with self._hooks_lock:
            hooks = list(self._destroy_hooks)
        for hook in hooks:
            try:
                hook(app)
            except Exception as e:  # noqa: BLE001 - a cleanup must not block the others
                log.failure("destroy hook failed for app {app}: {error}", app=app.name,
                            error=e)
        self._delete_app_rows(app)

    def _delete_app_rows(self, app: App) -> None:
        from controller.db import builds, config_vars, domains, formations, releases, slugs

        with self.db.write() as conn:
            for table in (builds, domains, formations, releases, slugs, config_vars,
                          collaborators):
                conn.execute(table.delete().where(table.c.app_id == app.id))
            conn.execute(apps.delete().where(apps.c.id == app.id))

    # --- per-app secrets ----------------------------------------------------
    def _new_secrets(self, app_id: int, name: str) -> str:
        doc = {"release_cookie": secrets.token_urlsafe(48),
               "secret_key_base": secrets.token_urlsafe(64),
               "node_basename": _node_basename(name),
               "ssh_host_key": new_host_key()}
        return self.keyring.encrypt(json.dumps(doc), f"app-secrets:{app_id}")

    def _secrets(self, conn: Connection, app: App) -> AppSecrets:
        token = conn.execute(sa.select(apps.c.secrets_ct).where(apps.c.id == app.id)).first()
        if token is None:
            raise not_found(app.name)
        doc = json.loads(self.keyring.decrypt(token.secrets_ct, f"app-secrets:{app.id}"))
        return AppSecrets(**doc)

    def app_secrets(self, app: App) -> AppSecrets:
        with self.db.read() as conn:
            return self._secrets(conn, app)

    def ssh_host_key(self, app: App) -> str:
        known = self.app_secrets(app).ssh_host_key
        if known:
            return known
        with self.db.write() as conn:  # an app made before host keys were
            token = conn.execute(sa.select(apps.c.secrets_ct).where(apps.c.id == app.id)).first()
            if token is None:
                raise not_found(app.name)
            doc = json.loads(self.keyring.decrypt(token.secrets_ct, f"app-secrets:{app.id}"))
            if not doc.get("ssh_host_key"):
                doc["ssh_host_key"] = new_host_key()
                conn.execute(apps.update().where(apps.c.id == app.id).values(
                    secrets_ct=self.keyring.encrypt(json.dumps(doc), f"app-secrets:{app.id}")))
            return str(doc["ssh_host_key"])
