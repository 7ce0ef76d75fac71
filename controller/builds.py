"""Builds: the push history of an app (who pushed what, how it went), and
what a push's slug becomes: a release, deployed (`deploy_slug`, the one call
the pipeline makes)."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from controller.base import log, silent
from controller.db import builds, now
from controller.slug_pruning import SlugPruningMixin
from controller.errors import BadRequest, NotFound
from controller.models import App, Build, Release, Slug, User
from core.output import Output
from storage.interface import ISlugStore

MAX_OUTPUT = 64 * 1024  # keep the tail: that is where a build says why it failed


def to_build(row: Any) -> Build:
    return Build(id=row.id, app_id=row.app_id, ref=row.ref, commit=row.commit,
                 user_email=row.user_email, status=row.status, output=row.output,
                 release_version=row.release_version, started_at=row.started_at,
                 finished_at=row.finished_at)


class BuildsMixin(SlugPruningMixin):
    def deploy_slug(self, app: App, slug: Slug, description: str, created_by: str,
                    output: Output | None = None, hot: bool = False,
                    slugs: ISlugStore | None = None,
                    deploy_output: Output | None = None) -> Release:
        """Push → release → deploy, in one call: under the app's release
        lock (a config change or a rollback waits for it, and it for them),
        a new release of `slug` with the current config, deployed through
        `deploy_release` (`hot`: upgraded in place where possible), then the
        slugs nothing keeps pruned from `slugs`. The deploy's own lines go
        to `deploy_output` (default `output`): the deployer records them in
        the app's logs itself. DeployFailed propagates (the release is then
        marked failed and the previous one serves on)."""
        output = output or silent
        with self.serialized(app, output):
            release = self.create_release(app, slug, description, created_by)
            output(f"-----> Released v{release.version}")
            try:
                release = self.deploy_release(app, release, deploy_output or output, hot=hot)
            except Exception:
                self.record_activity(app, created_by, "deploy",  # issue 18
                                     f"deploy of v{release.version} ({slug.commit[:7]}) failed",
                                     {"release": release.version, "status": "failed",
                                      "commit": slug.commit})
                raise
            self.record_activity(app, created_by, "deploy",  # issue 18
                                 f"deployed v{release.version} ({slug.commit[:7]})"
                                 + (" hot" if hot else ""),
                                 {"release": release.version, "status": "succeeded",
                                  "commit": slug.commit, "hot": hot})
            if slugs is not None:
                # issue 14: under the release lock, so no rollback picks a
                # slug while it goes. The deploy succeeded: a failure here
                # is logged and never fails it.
                try:
                    self.prune_slugs(app, slugs, output)
                except Exception:  # noqa: BLE001
                    log.failure("controller: pruning the slugs of {app} failed", app=app.name)
            return release

    def start_build(self, app: App, user: User, ref: str, commit: str) -> Build:
        with self.db.write() as conn:
            build_id = conn.execute(builds.insert().values(
                app_id=app.id, ref=ref[:255], commit=commit[:64], user_email=user.email,
                status="running", output="", started_at=now())).inserted_primary_key[0]
            self.record_activity(app, user.email, "push",  # issue 18
                                 f"pushed {ref[:100]} {commit[:7]}",
                                 {"ref": ref[:255], "commit": commit[:64]}, conn=conn)
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
            row = conn.execute(sa.select(builds).where(builds.c.id == build_id)).one()
            if status == "failed" and release_version is None:
                # issue 18: a push that never became a release (build or deploy failed)
                self._insert_activity(conn, row.app_id, row.user_email, "push",
                                      f"push of {row.commit[:7]} rejected",
                                      {"ref": row.ref, "commit": row.commit,
                                       "status": "failed", "build": row.id})
            return to_build(row)

    def list_builds(self, user: User, app: str) -> list[Build]:
        with self.db.read() as conn:
            found = self._authorize(conn, user, app, "read")
            rows = conn.execute(sa.select(builds).where(builds.c.app_id == found.id)
                                .order_by(builds.c.id.desc())).all()
        return [to_build(r) for r in rows]

    def build_for_release(self, app: App, release: Release) -> Build | None:
        """The push's build record behind `release` (issue 18, releases:info):
        the build that made it, or, for a push whose deploy failed (its build
        names no release), the newest unreleased build of its commit from
        before it. Rollbacks and config changes have none of their own."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(builds).where(
                builds.c.app_id == app.id, builds.c.release_version == release.version)
                .order_by(builds.c.id.desc()).limit(1)).first()
            if row is None and release.status == "failed" and release.commit:
                row = conn.execute(sa.select(builds).where(
                    builds.c.app_id == app.id, builds.c.commit == release.commit,
                    builds.c.release_version.is_(None),
                    builds.c.started_at <= release.created_at)
                    .order_by(builds.c.id.desc()).limit(1)).first()
        return to_build(row) if row is not None else None
