"""Builds: the push history of an app (who pushed what, how it went)."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from controller.db import builds, now
from controller.slug_pruning import SlugPruningMixin
from controller.errors import BadRequest, NotFound
from controller.models import App, Build, User

MAX_OUTPUT = 64 * 1024  # keep the tail: that is where a build says why it failed


def to_build(row: Any) -> Build:
    return Build(id=row.id, app_id=row.app_id, ref=row.ref, commit=row.commit,
                 user_email=row.user_email, status=row.status, output=row.output,
                 release_version=row.release_version, started_at=row.started_at,
                 finished_at=row.finished_at)


class BuildsMixin(SlugPruningMixin):
    def start_build(self, app: App, user: User, ref: str, commit: str) -> Build:
        with self.db.write() as conn:
            build_id = conn.execute(builds.insert().values(
                app_id=app.id, ref=ref[:255], commit=commit[:64], user_email=user.email,
                status="running", output="", started_at=now())).inserted_primary_key[0]
            return to_build(conn.execute(sa.select(builds).where(builds.c.id == build_id)).one())

    def finish_build(self, build_id: int, status: str, output: str,
                     release_version: int | None = None) -> Build:
        if status not in ("succeeded", "failed"):
            raise BadRequest(f"a build finishes as succeeded or failed, not {status!r}")
        with self.db.write() as conn:
            done = conn.execute(builds.update().where(builds.c.id == build_id).values(
                status=status, output=output[-MAX_OUTPUT:], release_version=release_version,
                finished_at=now())).rowcount
            if not done:
                raise NotFound(f"no build {build_id}")
            return to_build(conn.execute(sa.select(builds).where(builds.c.id == build_id)).one())

    def list_builds(self, user: User, app: str) -> list[Build]:
        with self.db.read() as conn:
            found = self._authorize(conn, user, app, "read")
            rows = conn.execute(sa.select(builds).where(builds.c.app_id == found.id)
                                .order_by(builds.c.id.desc())).all()
        return [to_build(r) for r in rows]
