"""Who may do what to an app, and the collaborator list.

Owner and collaborators may read and write (push, deploy, config, logs);
only the owner destroys the app or manages access. An app the caller cannot
see is NotFound — never Forbidden — so app names do not leak.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from controller.base import StoreBase
from controller.db import apps, collaborators, now, ssh_keys, users
from controller.errors import BadRequest, Conflict, Forbidden, NotFound
from controller.revocation import Revocation
from controller.models import App, User
from controller.service import Need
from controller.users import normalize_email

owners = users.alias("owners")
APP_COLUMNS = (apps.c.id, apps.c.name, apps.c.owner_id, owners.c.email.label("owner_email"),
               apps.c.created_at, apps.c.replica_size)


def app_select() -> sa.Select:
    return sa.select(*APP_COLUMNS).join(owners, owners.c.id == apps.c.owner_id)


def to_app(row: Any) -> App:
    return App(id=row.id, name=row.name, owner_id=row.owner_id,
               owner_email=row.owner_email, created_at=row.created_at,
               replica_size=row.replica_size)


def lock_user(conn: Connection, user: User) -> None:
    """Hold the user's row until commit (PostgreSQL), so limit counts made
    in this transaction cannot be raced; SQLite's write lock covers it."""
    conn.execute(sa.select(users.c.id).where(users.c.id == user.id).with_for_update())


def lock_app(conn: Connection, app: App) -> None:
    """Same for an app's row: serialises changes to one app's state."""
    conn.execute(sa.select(apps.c.id).where(apps.c.id == app.id).with_for_update())


def not_found(name: object) -> NotFound:
    return NotFound(f"no app named {str(name)[:80]!r}")


class AccessMixin(StoreBase):
    def _find_app(self, conn: Connection, name: object) -> App:
        if not isinstance(name, str):
            raise not_found(name)
        row = conn.execute(app_select().where(apps.c.name == name.strip().lower())).first()
        if row is None:
            raise not_found(name)
        return to_app(row)

    def _is_collaborator(self, conn: Connection, app: App, user: User) -> bool:
        return conn.execute(sa.select(collaborators.c.user_id).where(
            collaborators.c.app_id == app.id, collaborators.c.user_id == user.id)).first() is not None

    def _authorize(self, conn: Connection, user: User, name: object, need: Need) -> App:
        """The app if `user` may act with `need` on it (see the module doc)."""
        app = self._find_app(conn, name)
        if app.owner_id == user.id:
            return app
        if not self._is_collaborator(conn, app, user):
            raise not_found(name)
        if need == "owner":
            raise Forbidden(f"only the owner of {app.name} can do that")
        return app

    def get_app(self, user: User, name: str, need: Need = "read") -> App:
        with self.db.read() as conn:
            return self._authorize(conn, user, name, need)

    def list_collaborators(self, user: User, app: str) -> list[str]:
        with self.db.read() as conn:
            found = self._authorize(conn, user, app, "read")
            rows = conn.execute(
                sa.select(users.c.email).join(collaborators, collaborators.c.user_id == users.c.id)
                .where(collaborators.c.app_id == found.id).order_by(users.c.email)).all()
        return [r.email for r in rows]

    def add_collaborator(self, user: User, app: str, email: str) -> None:
        email = normalize_email(email)
        limit = self.settings.limits.collaborators_per_app
        try:
            with self.db.write() as conn:
                found = self._authorize(conn, user, app, "owner")
                lock_app(conn, found)
                other = conn.execute(sa.select(users.c.id).where(users.c.email == email)).first()
                if other is None:
                    raise NotFound(f"no user with email {email}")
                if other.id == found.owner_id:
                    raise BadRequest(f"{email} owns {found.name} already")
                if conn.execute(sa.select(collaborators.c.user_id).where(
                        collaborators.c.app_id == found.id,
                        collaborators.c.user_id == other.id)).first():
                    raise Conflict(f"{email} is already a collaborator on {found.name}")
                count = conn.execute(sa.select(sa.func.count()).select_from(collaborators)
                                     .where(collaborators.c.app_id == found.id)).scalar_one()
                if count >= limit:
                    raise BadRequest(f"too many collaborators (the limit is {limit} per app)")
                conn.execute(collaborators.insert().values(
                    app_id=found.id, user_id=other.id, created_at=now()))
                self.record_activity(found, user.email, "access:add",  # issue 18
                                     f"added collaborator {email}", {"email": email}, conn=conn)
        except IntegrityError:
            raise Conflict(f"{email} is already a collaborator") from None

    def remove_collaborator(self, user: User, app: str, email: str) -> None:
        email = normalize_email(email)
        with self.db.write() as conn:
            found = self._authorize(conn, user, app, "owner")
            other = conn.execute(sa.select(users.c.id).where(users.c.email == email)).first()
            done = other is not None and conn.execute(collaborators.delete().where(
                collaborators.c.app_id == found.id,
                collaborators.c.user_id == other.id)).rowcount
            if done:
                self.record_activity(found, user.email, "access:remove",  # issue 18
                                     f"removed collaborator {email}", {"email": email},
                                     conn=conn)
        if not done:
            raise NotFound(f"{email} is not a collaborator on {found.name}")
        self._revoked(Revocation(user_id=other.id, app=found.name))  # ends ps:ssh (issue 14)

    def authorized_keys(self, app: App) -> list[str]:
        member_ids = sa.union(
            sa.select(apps.c.owner_id.label("uid")).where(apps.c.id == app.id),
            sa.select(collaborators.c.user_id.label("uid")).where(collaborators.c.app_id == app.id),
        ).subquery()
        with self.db.read() as conn:
            rows = conn.execute(sa.select(ssh_keys.c.public_key)
                                .where(ssh_keys.c.user_id.in_(sa.select(member_ids.c.uid)))
                                .order_by(ssh_keys.c.id)).all()
        return [r.public_key for r in rows]
