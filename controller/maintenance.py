"""Maintenance mode and canaries: stored per app, applied to the router.

The database is the truth (several processes share it, and a restarted
proxy or server gets the states back from it: `restore`); the router only
applies them at run time (router/haproxy_overlays.py). Both apps of a canary
must be writable by the caller: a canary sends the other app's replicas
real users' requests, and the other app's owner must have agreed to that.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from twisted.logger import Logger

from controller.db import metadata
from controller.errors import BadRequest, Unavailable
from controller.models import User
from controller.service import Controller

log = Logger()

overlays = sa.Table(
    "route_overlays", metadata,
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("maintenance", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("canary_app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="SET NULL"),
              nullable=True, index=True),
    sa.Column("canary_weight", sa.Integer, nullable=False, server_default="0"),
    extend_existing=True,
)
_apps = sa.table("apps", sa.column("id"), sa.column("name"))


class RouteOverlays:
    def __init__(self, controller: Controller, router: Any) -> None:
        self.controller, self.router = controller, router
        self.db = controller.db  # type: ignore[attr-defined]

    def _router(self) -> Any:
        if self.router is None:
            raise Unavailable("no router runs in this process")
        return self.router

    def _apply(self, call: Any) -> None:
        """A router refusal is the caller's one-line error (the state is
        stored: the next server start applies it)."""
        try:
            call()
        except RuntimeError as e:
            raise Unavailable(f"the router did not apply it: {e}") from None

    def _upsert(self, app_id: int, **values: Any) -> None:
        with self.db.write() as conn:
            row = conn.execute(sa.select(overlays.c.app_id).where(
                overlays.c.app_id == app_id)).first()
            if row is None:
                conn.execute(overlays.insert().values(app_id=app_id, **values))
            else:
                conn.execute(overlays.update().where(overlays.c.app_id == app_id).values(**values))

    def status(self, user: User, name: str) -> dict[str, Any]:
        app = self.controller.get_app(user, name)
        with self.db.read() as conn:
            row = conn.execute(sa.select(overlays.c.maintenance, _apps.c.name,
                                         overlays.c.canary_weight)
                               .select_from(overlays.outerjoin(
                                   _apps, _apps.c.id == overlays.c.canary_app_id))
                               .where(overlays.c.app_id == app.id)).first()
        canary = ({"app": row[1], "weight": row[2]} if row and row[1] else None)
        return {"app": app.name, "maintenance": bool(row and row[0]), "canary": canary}

    def set_maintenance(self, user: User, name: str, on: bool) -> dict[str, Any]:
        app = self.controller.get_app(user, name, "write")
        router = self._router()
        self._upsert(app.id, maintenance=on)
        self._apply(lambda: router.set_maintenance(app.name, on))
        self.controller.record_activity(  # type: ignore[attr-defined]  # issue 18
            app, user.email, "maintenance:" + ("on" if on else "off"),
            "maintenance " + ("on" if on else "off"), {"maintenance": on})
        return self.status(user, name)

    def set_canary(self, user: User, name: str, canary: str | None,
                   weight: int = 0) -> dict[str, Any]:
        app = self.controller.get_app(user, name, "write")
        router = self._router()
        if canary is None:
            self._upsert(app.id, canary_app_id=None, canary_weight=0)
            self._apply(lambda: router.set_canary(app.name, None))
            return self.status(user, name)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise BadRequest("the canary weight is a whole number from 0 to 100")
        other = self.controller.get_app(user, canary, "write")
        if other.id == app.id:
            raise BadRequest("an app cannot be its own canary")
        self._upsert(app.id, canary_app_id=other.id, canary_weight=weight)
        self._apply(lambda: router.set_canary(app.name, other.name, weight))
        return self.status(user, name)

    def restore(self) -> None:
        """Apply every stored state to the router (at server start; the
        router keeps them across its own restarts)."""
        router = self._router()
        own, other = _apps.alias("own"), _apps.alias("other")
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(own.c.name, overlays.c.maintenance, other.c.name,
                          overlays.c.canary_weight)
                .select_from(overlays.join(own, own.c.id == overlays.c.app_id)
                             .outerjoin(other, other.c.id == overlays.c.canary_app_id))).all()
        for name, maintenance, canary, weight in rows:
            try:
                router.set_maintenance(name, bool(maintenance))
                if canary:
                    router.set_canary(name, canary, int(weight))
            except Exception:  # noqa: BLE001 (the others are still restored)
                log.failure("router: could not restore {app}'s maintenance/canary", app=name)

    def forget(self, name: str) -> None:
        """The app is destroyed (its rows go with it): a new app of the same
        name starts without its states."""
        if self.router is None:
            return
        try:
            self.router.set_maintenance(name, False)
            self.router.set_canary(name, None)
            for app, (other, _) in self.router.canaries().items():
                if other == name:
                    self.router.set_canary(app, None)
        except Exception:  # noqa: BLE001 (the destroy goes on)
            log.failure("router: could not clear {app}'s maintenance/canary", app=name)
