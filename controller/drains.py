"""Log drains per app, kept in the database (the URL encrypted with the
keyring: it may carry credentials, which are never shown back), and the
running forwarders (logger.drains.DrainHub) kept in step with it."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from controller.db import UTCDateTime, metadata, now
from controller.errors import BadRequest, NotFound
from core.addresses import parse_allow, GuardRules
from logger.drains import BadDrain, DrainHub, check_reachable, parse_drain_url, redact

MAX_DRAINS = 5  # per app, as Heroku's

drains = sa.Table(
    "drains", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("url_ct", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


def _aad(drain_id: int | str) -> str:
    return f"drain:{drain_id}"


def rules_for(settings: Any) -> GuardRules:
    return GuardRules(allow=parse_allow(settings.fetch_allow),
                      connect_timeout=settings.fetch_connect_timeout)


class Drains:
    """Add, remove and list one app's drains; feed the hub."""

    def __init__(self, controller: Any, hub: DrainHub) -> None:
        self.controller, self.hub = controller, hub

    def _rows(self, app_id: int) -> list[tuple[int, str]]:
        with self.controller.db.read() as conn:
            rows = conn.execute(sa.select(drains.c.id, drains.c.url_ct)
                                .where(drains.c.app_id == app_id).order_by(drains.c.id)).all()
        return [(r.id, self.controller.keyring.decrypt(r.url_ct, _aad(f"{app_id}:{r.id}")))
                for r in rows]

    def load_all(self) -> None:
        """At start-up: every app's drains start forwarding."""
        for app in self.controller.all_apps():
            rows = self._rows(app.id)
            if rows:
                self.hub.set(app.name, rows)

    def list(self, user: Any, app_name: str) -> list[dict[str, Any]]:
        app = self.controller.get_app(user, app_name)
        status = self.hub.status(app.name)
        return [status.get(i) or {"id": i, "url": redact(url), "sent": 0, "dropped": 0,
                                  "buffered": 0, "last_error": None}
                for i, url in self._rows(app.id)]

    def add(self, user: Any, app_name: str, url: str) -> dict[str, Any]:
        app = self.controller.get_app(user, app_name, "write")
        try:
            target = parse_drain_url(url)
            check_reachable(target, self.hub.rules)
        except BadDrain as exc:
            raise BadRequest(f"drain refused: {exc}") from None
        rows = self._rows(app.id)
        if any(existing == url for _, existing in rows):
            raise BadRequest(f"{target.shown} is already a drain of {app.name}")
        if len(rows) >= MAX_DRAINS:
            raise BadRequest(f"{app.name} already has {MAX_DRAINS} drains")
        with self.controller.db.write() as conn:
            drain_id = conn.execute(drains.insert().values(
                app_id=app.id, url_ct="", created_at=now())).inserted_primary_key[0]
            conn.execute(drains.update().where(drains.c.id == drain_id).values(
                url_ct=self.controller.keyring.encrypt(url, _aad(f"{app.id}:{drain_id}"))))
        self.hub.set(app.name, self._rows(app.id))
        return {"id": drain_id, "url": target.shown}

    def remove(self, user: Any, app_name: str, which: str) -> None:
        """By id or by URL (as added, or as shown)."""
        app = self.controller.get_app(user, app_name, "write")
        rows = self._rows(app.id)
        match = [i for i, url in rows if which in (str(i), url, redact(url))]
        if not match:
            raise NotFound(f"no such drain on {app.name}")
        with self.controller.db.write() as conn:
            conn.execute(drains.delete().where(drains.c.id == match[0]))
        self.hub.set(app.name, self._rows(app.id))
