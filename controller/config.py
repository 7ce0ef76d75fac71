"""Config vars, encrypted at rest, and master-key rotation.

Each value is sealed with AES-256-GCM under the keyring's current key, with
associated data "config:<app id>:<name>" so a ciphertext cannot be moved to
another app or variable. Changing config makes a new release from the live
release's slug when there is one, and deploys it.

Names Shipway sets itself are refused (`RESERVED`): PORT, APP_NAME,
APP_VERSION, RELEASE_COOKIE, RELEASE_NODE, MY_NODE_NAME, SECRET_KEY_BASE,
RELEASE_DISTRIBUTION, and anything starting with SHIPWAY_.
"""
from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from controller.access import lock_app
from controller.db import apps, config_vars, releases
from controller.errors import BadRequest, TooLarge
from controller.models import App, Release, User
from controller.releases import ReleasesMixin
from controller.service import Output
from controller.webhooks import secret_aad, webhooks  # issue 18: secrets to re-seal

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
RESERVED = frozenset({
    "PORT", "APP_NAME", "APP_VERSION", "RELEASE_COOKIE", "RELEASE_NODE", "MY_NODE_NAME",
    "SECRET_KEY_BASE", "RELEASE_DISTRIBUTION",
})
_BATCH = 200


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 255:
        raise BadRequest(f"invalid config name {str(name)[:60]!r}: use letters, digits and "
                         "underscores, not starting with a digit")
    if name in RESERVED or name.startswith("SHIPWAY_"):
        raise BadRequest(f"{name} is set by Shipway and cannot be configured")
    return name


def check_value(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"the value of {name} must be a string")
    if "\x00" in value:
        raise BadRequest(f"the value of {name} contains a NUL byte")
    return value


def config_aad(app_id: int, name: str) -> str:
    return f"config:{app_id}:{name}"


class ConfigMixin(ReleasesMixin):
    def _config(self, conn: Connection, app: App) -> dict[str, str]:
        rows = conn.execute(sa.select(config_vars.c.name, config_vars.c.value_ct)
                            .where(config_vars.c.app_id == app.id)
                            .order_by(config_vars.c.name)).all()
        return {r.name: self.keyring.decrypt(r.value_ct, config_aad(app.id, r.name))
                for r in rows}

    def _replace_config(self, conn: Connection, app: App, values: dict[str, str]) -> None:
        """Make the app's config exactly `values` (a rollback's snapshot)."""
        conn.execute(config_vars.delete().where(config_vars.c.app_id == app.id))
        for name, value in values.items():
            conn.execute(config_vars.insert().values(
                app_id=app.id, name=name, size=len(name.encode()) + len(value.encode()),
                value_ct=self.keyring.encrypt(value, config_aad(app.id, name))))

    def get_config(self, user: User, app: str) -> dict[str, str]:
        with self.db.read() as conn:
            return self._config(conn, self._authorize(conn, user, app, "read"))

    def current_config(self, app: App) -> dict[str, str]:
        with self.db.read() as conn:
            return self._config(conn, app)

    def set_config(self, user: User, app: str, values: dict[str, str],
                   output: Output | None = None) -> Release | None:
        """Validates everything before changing anything. When the app has a
        live release, a new release (its slug, the new config) is created in
        the same transaction and then deployed: if that deploy fails the
        config stays changed, the release is marked failed and DeployFailed
        propagates (the previous release keeps serving)."""
        if not isinstance(values, dict) or not values:
            raise BadRequest("give at least one NAME=value to set")
        clean = {check_name(k): check_value(k, v) for k, v in values.items()}
        return self._change(user, app, clean, [], "Set " + ", ".join(sorted(clean)), output)

    def unset_config(self, user: User, app: str, keys: list[str],
                     output: Output | None = None) -> Release | None:
        """Unsetting names that are not set is not an error; when nothing
        changes, no release is made and None is returned."""
        if not isinstance(keys, (list, tuple)) or not keys:
            raise BadRequest("give at least one config name to unset")
        names = sorted({check_name(k) for k in keys})
        return self._change(user, app, {}, names, "Unset " + ", ".join(names), output)

    def _change(self, user: User, app: str, set_values: dict[str, str],
                unset: list[str], description: str, output: Output | None) -> Release | None:
        with self.serialized(self.get_app(user, app, "write"), output):
            return self._change_locked(user, app, set_values, unset, description, output)

    def _change_locked(self, user: User, app: str, set_values: dict[str, str],
                       unset: list[str], description: str,
                       output: Output | None) -> Release | None:
        limit = self.settings.limits.config_bytes
        with self.db.write() as conn:
            found = self._authorize(conn, user, app, "write")
            # Serialise config changes of one app (PostgreSQL; SQLite's write
            # transaction already holds the database lock).
            lock_app(conn, found)
            changed = False
            for name in unset:
                changed |= bool(conn.execute(config_vars.delete().where(
                    config_vars.c.app_id == found.id, config_vars.c.name == name)).rowcount)
            for name, value in set_values.items():
                conn.execute(config_vars.delete().where(
                    config_vars.c.app_id == found.id, config_vars.c.name == name))
                conn.execute(config_vars.insert().values(
                    app_id=found.id, name=name, size=len(name.encode()) + len(value.encode()),
                    value_ct=self.keyring.encrypt(value, config_aad(found.id, name))))
                changed = True
            total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(config_vars.c.size), 0))
                                 .where(config_vars.c.app_id == found.id)).scalar_one()
            if total > limit:
                # Raising rolls the whole transaction back: nothing changed.
                raise TooLarge(f"config would be {total} bytes; the limit is {limit}")
            if changed:  # issue 18: the names only, never a value
                self.record_activity(found, user.email, "config", description,
                                     {"set": sorted(set_values), "unset": list(unset)},
                                     conn=conn)
            current = self._current_row(conn, found)
            if not changed or current is None or current.slug_id is None:
                return None
            slug = self._slug_row(conn, current.slug_id)
            if slug is None:
                return None
            release = self._insert_release(conn, found, slug, self._config(conn, found),
                                           description, user.email)
        return self.deploy_release(found, release, output)

    # --- master-key rotation ---------------------------------------------------
    def rotate_master_key(self) -> int:
        """New key first (old keys kept), then every ciphertext re-sealed in
        batches, and only then the old keys retired. Interrupted anywhere,
        every value still decrypts; running it again finishes the job."""
        self.keyring.begin_rotation()
        count = self.reencrypt_all()
        self.keyring.finish_rotation()
        return count

    def reencrypt_all(self, limit: int | None = None) -> int:
        """Re-seal ciphertexts not under the current key (at most `limit`,
        for tests that interrupt a rotation). Returns how many."""
        done = 0
        targets: list[tuple[Any, Any, Any]] = [
            (config_vars, config_vars.c.value_ct,
             lambda r: config_aad(r.app_id, r.name)),
            (releases, releases.c.config_ct,
             lambda r: f"release-config:{r.app_id}:{r.version}"),
            (apps, apps.c.secrets_ct, lambda r: f"app-secrets:{r.id}"),
        ]
        # issue 18: the webhooks' secrets are sealed with the keyring too
        targets.append((webhooks, webhooks.c.secret_ct, lambda r: secret_aad(r.app_id, r.url)))
        for table, column, aad in targets:
            keys = list(table.primary_key.columns)
            while limit is None or done < limit:
                current = self.keyring.current_id
                with self.db.write() as conn:
                    rows = conn.execute(
                        sa.select(table).where(column.is_not(None),
                                               sa.not_(column.startswith(f"v1:{current}:")))
                        .order_by(*keys).limit(_BATCH)).all()
                    if limit is not None:
                        rows = rows[:limit - done]
                    for row in rows:
                        token = getattr(row, column.name)
                        fresh = self.keyring.encrypt(self.keyring.decrypt(token, aad(row)), aad(row))
                        conn.execute(table.update().where(
                            *[k == getattr(row, k.name) for k in keys]).values({column.name: fresh}))
                done += len(rows)
                if len(rows) < _BATCH:
                    break
        return done
