"""Activity (issue 18 item 5): who did what to an app and when, stored in
the database so `apps:activity` outlives the process. Each record is an
action name, a one-line summary and a small JSON detail; config changes
carry the names changed, never their values (a record is readable by every
collaborator, a value may be a secret)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from controller.base import StoreBase, log
from controller.db import UTCDateTime, _fk, metadata, now
from controller.errors import BadRequest
from controller.models import App, User

activity = sa.Table(
    "activity", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("app_id", sa.Integer, _fk("apps.id"), nullable=False, index=True),
    sa.Column("actor", sa.String(254), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("summary", sa.String(500), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Per app, the newest records kept: enough for months of pushes, and a
# script that scales in a loop cannot grow the table without bound.
KEEP = 5000
DEFAULT_LIMIT = 50


@attrs.frozen
class Activity:
    id: int
    app: str
    actor: str  # email, or "shipway" for what the platform did itself
    action: str  # push, deploy, config, scale, resize, restart, rollback, domains:add, ...
    summary: str
    detail: dict[str, Any]
    created_at: dt.datetime


def check_limit(value: object) -> int:
    """`-n`: a whole number from 1 to KEEP."""
    try:
        n = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise BadRequest("n must be a whole number") from None
    if not 1 <= n <= KEEP:
        raise BadRequest(f"n must be from 1 to {KEEP}")
    return n


class ActivityMixin(StoreBase):
    def record_activity(self, app: App, actor: str, action: str, summary: str,
                        detail: dict[str, Any] | None = None,
                        conn: Connection | None = None) -> None:
        """Record one action. With `conn`, inside that transaction (it is
        recorded exactly when the change commits); without, in its own, and
        a failure is logged, never raised: the action itself happened."""
        if conn is not None:
            self._insert_activity(conn, app.id, actor, action, summary, detail or {})
            return
        try:
            with self.db.write() as own:
                self._insert_activity(own, app.id, actor, action, summary, detail or {})
        except Exception:  # noqa: BLE001
            log.failure("controller: recording {action} on {app} failed", action=action,
                        app=app.name)

    @staticmethod
    def _insert_activity(conn: Connection, app_id: int, actor: str, action: str, summary: str,
                         detail: dict[str, Any]) -> None:
        new_id = conn.execute(activity.insert().values(
            app_id=app_id, actor=actor[:254], action=action[:32], summary=summary[:500],
            detail=detail, created_at=now())).inserted_primary_key[0]
        if new_id % 100 == 0:  # prune now and then, not on every write
            cutoff = conn.execute(sa.select(activity.c.id).where(activity.c.app_id == app_id)
                                  .order_by(activity.c.id.desc()).offset(KEEP).limit(1)
                                  ).scalar_one_or_none()
            if cutoff is not None:
                conn.execute(activity.delete().where(activity.c.app_id == app_id,
                                                     activity.c.id <= cutoff))

    def list_activity(self, user: User, app: str, limit: int = DEFAULT_LIMIT) -> list[Activity]:
        """Newest first; only the app's owner and collaborators may read it."""
        limit = check_limit(limit)
        with self.db.read() as conn:
            found = self._authorize(conn, user, app, "read")  # type: ignore[attr-defined]
            rows = conn.execute(sa.select(activity).where(activity.c.app_id == found.id)
                                .order_by(activity.c.id.desc()).limit(limit)).all()
        return [Activity(id=r.id, app=found.name, actor=r.actor, action=r.action,
                         summary=r.summary, detail=dict(r.detail or {}),
                         created_at=r.created_at) for r in rows]
