"""The release rules, in one place for the API, the pipeline and config
changes: numbering, the config snapshot, deploy status, what is live, and
rollback.

- Versions are per app, 1, 2, 3…, handed out by bumping `apps.last_version`
  inside the creating transaction. The bump locks the app row (PostgreSQL)
  or the database (SQLite `BEGIN IMMEDIATE`), so concurrent creators queue
  instead of colliding, and a version is never reused even if releases are
  deleted; `UNIQUE (app_id, version)` backs the rule up.
- A release carries its slug, an encrypted snapshot of the config at its
  creation, the slug's process types, a description, status and author.
- Status: pending → deploying → succeeded | failed. What is live (the
  "current" release, the last good one) is the newest succeeded release.
- Rollback makes a *new* release with an older release's slug and config.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from controller.access import lock_app
from controller.apps import AppsMixin
from controller.base import log, silent
from controller.db import apps, builds, now, releases, slugs
from controller.errors import BadRequest, NotFound
from controller.models import App, Release, Slug, User
from controller.service import Output

RELEASE_COLUMNS = [c for c in releases.c if c.name != "config_ct"]


def to_release(row: Any, app_name: str) -> Release:
    return Release(id=row.id, app_id=row.app_id, app_name=app_name, version=row.version,
                   slug_id=row.slug_id, commit=row.commit,
                   process_types=dict(row.process_types or {}), description=row.description,
                   status=row.status, created_by=row.created_by, created_at=row.created_at,
                   slug_pruned=getattr(row, "slug_pruned_at", None) is not None,
                   hot=bool(row.hot))


def snapshot_aad(app_id: int, version: int) -> str:
    return f"release-config:{app_id}:{version}"


class ReleasesMixin(AppsMixin):
    # --- building blocks used inside other transactions -----------------------
    def _next_version(self, conn: Connection, app: App) -> int:
        version = conn.execute(apps.update().where(apps.c.id == app.id)
                               .values(last_version=apps.c.last_version + 1)
                               .returning(apps.c.last_version)).scalar_one_or_none()
        if version is None:
            raise NotFound(f"no app named {app.name!r}")
        return version

    def _current_row(self, conn: Connection, app: App, below: int | None = None) -> Any:
        query = sa.select(*RELEASE_COLUMNS).where(releases.c.app_id == app.id,
                                                  releases.c.status == "succeeded")
        if below is not None:
            query = query.where(releases.c.version < below)
        return conn.execute(query.order_by(releases.c.version.desc()).limit(1)).first()

    def _insert_release(self, conn: Connection, app: App, slug: Slug | None,
                        config: dict[str, str], description: str, created_by: str) -> Release:
        version = self._next_version(conn, app)
        token = self.keyring.encrypt(json.dumps(config, sort_keys=True),
                                     snapshot_aad(app.id, version))
        release_id = conn.execute(releases.insert().values(
            app_id=app.id, version=version, slug_id=slug.id if slug else None,
            commit=slug.commit if slug else None,
            process_types=dict(slug.process_types) if slug else {},
            description=description[:1000], status="pending", created_by=created_by,
            config_ct=token, created_at=now(),
        )).inserted_primary_key[0]
        row = conn.execute(sa.select(*RELEASE_COLUMNS).where(releases.c.id == release_id)).one()
        log.info("app {app}: release v{version} created ({description})", app=app.name,
                 version=version, description=description)
        return to_release(row, app.name)

    def _snapshot(self, conn: Connection, app_id: int, version: int) -> dict[str, str]:
        token = conn.execute(sa.select(releases.c.config_ct).where(
            releases.c.app_id == app_id, releases.c.version == version)).scalar_one()
        return json.loads(self.keyring.decrypt(token, snapshot_aad(app_id, version)))

    def _set_status(self, release: Release, status: str,
                    also: Callable[[Connection], None] | None = None,
                    hot: bool = False) -> Release:
        """`also` runs in the same transaction: what must change exactly
        when the release becomes (or does not become) what runs. `hot`:
        it went live by upgrading the running replicas in place."""
        with self.db.write() as conn:
            conn.execute(releases.update().where(releases.c.id == release.id)
                         .values(status=status, hot=hot))
            if also is not None:
                also(conn)
            row = conn.execute(sa.select(*RELEASE_COLUMNS)
                               .where(releases.c.id == release.id)).one()
        return to_release(row, release.app_name)

    # --- the contract ------------------------------------------------------------
    def create_release(self, app: App, slug: Slug | None, description: str,
                       created_by: str) -> Release:
        if slug is not None and slug.app_id != app.id:
            raise BadRequest(f"slug {slug.id} does not belong to {app.name}")
        with self.db.write() as conn:
            # Lock before reading the config: a higher version then always
            # carries config at least as new as every lower one.
            lock_app(conn, app)
            return self._insert_release(conn, app, slug, self._config(conn, app),
                                        description, created_by)

    def deploy_release(self, app: App, release: Release, output: Output | None = None,
                       hot: bool = False,
                       on_success: Callable[[Connection], None] | None = None) -> Release:
        """Any exception from the deployer marks the release failed and is
        re-raised (DeployFailed for an unhealthy release; Unavailable when no
        deployer is wired), so no release is left "deploying"."""
        output = output or silent
        with self.release_lock(app):
            release = self._set_status(release, "deploying")
            try:
                went_hot = self.deployer().deploy(app, release, output, hot=hot)
            except BaseException as e:
                failed = self._set_status(release, "failed")
                log.info("app {app}: release v{version} failed: {error}", app=app.name,
                         version=release.version, error=e)
                self.notify_release(app, failed)  # issue 18: webhooks, queued
                raise
            done = self._set_status(release, "succeeded", also=on_success,
                                    hot=hot and bool(went_hot))
            self.notify_release(app, done)  # issue 18: webhooks, queued
            return done

    def fail_interrupted(self, deploying: bool = True) -> tuple[int, int]:
        # Called before the runner adopts containers: a release cut off
        # mid-deploy never became current, so its replicas are retired then.
        # deploying=False: those are settled apart (controller/settle.py).
        cut_off = ("pending", "deploying") if deploying else ("pending",)
        with self.db.write() as conn:
            failed_releases = conn.execute(
                releases.update().where(releases.c.status.in_(cut_off))
                .values(status="failed")).rowcount
            failed_builds = conn.execute(
                builds.update().where(builds.c.status == "running").values(
                    status="failed", finished_at=now(),
                    output=builds.c.output + "\ninterrupted: the server stopped during this push\n",
                )).rowcount
        if failed_releases or failed_builds:
            log.warn("controller: marked {r} interrupted release(s) and {b} build(s) failed",
                     r=failed_releases, b=failed_builds)
        return failed_releases, failed_builds

    def list_releases(self, user: User, app: str) -> list[Release]:
        with self.db.read() as conn:
            found = self._authorize(conn, user, app, "read")
            rows = conn.execute(
                sa.select(*RELEASE_COLUMNS, slugs.c.pruned_at.label("slug_pruned_at"))
                .select_from(releases.outerjoin(slugs, slugs.c.id == releases.c.slug_id))
                .where(releases.c.app_id == found.id)
                .order_by(releases.c.version.desc())).all()
        return [to_release(r, found.name) for r in rows]

    def get_release(self, app: App, version: int) -> Release:
        if isinstance(version, bool) or not isinstance(version, int):
            raise BadRequest("release version must be an integer")
        with self.db.read() as conn:
            row = conn.execute(sa.select(*RELEASE_COLUMNS).where(
                releases.c.app_id == app.id, releases.c.version == version)).first()
        if row is None:
            raise NotFound(f"{app.name} has no release v{version}")
        return to_release(row, app.name)

    def current_release(self, app: App) -> Release | None:
        with self.db.read() as conn:
            row = self._current_row(conn, app)
        return to_release(row, app.name) if row else None

    def rollback(self, user: User, app: str, version: int | None = None,
                 output: Output | None = None) -> Release:
        """Deploys a new release made from `version`'s slug and config; the
        default target is the succeeded release before the current one.
        Like Heroku, the app's config vars are restored to that snapshot too,
        so `config` shows what runs and the next `config:set` builds on it.
        DeployFailed propagates (the new release is then marked failed, and
        the config vars stay as they were: it is the running release's
        config they show). A release that failed to deploy is no target."""
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                    or not 0 < version < 2**31):
            raise BadRequest("release version must be a whole number from 1")
        found = self.get_app(user, app, "write")
        with self.serialized(found, output):
            release, config = self._rollback_release(user, found, version)
            # The config vars become the target's with the release's success,
            # in one transaction: never one without the other.
            try:
                done = self.deploy_release(
                    found, release, output,
                    on_success=lambda conn: self._replace_config(conn, found, config))
            except Exception:
                self.record_activity(found, user.email, "rollback",  # issue 18
                                     f"{release.description}: v{release.version} failed",
                                     {"release": release.version, "status": "failed"})
                raise
            self.record_activity(found, user.email, "rollback",  # issue 18
                                 f"{release.description}: v{release.version}",
                                 {"release": release.version, "status": "succeeded"})
            return done

    def _rollback_release(self, user: User, app: App,
                          version: int | None) -> tuple[Release, dict[str, str]]:
        """The new release a rollback deploys, and the config it restores."""
        with self.db.write() as conn:
            found = self._authorize(conn, user, app.name, "write")
            if version is None:
                current = self._current_row(conn, found)
                if current is None:
                    raise BadRequest(f"{found.name} has no live release to roll back from")
                target = self._current_row(conn, found, below=current.version)
                if target is None:
                    raise BadRequest(f"{found.name} has no earlier good release to roll back to")
            else:
                target = conn.execute(sa.select(*RELEASE_COLUMNS).where(
                    releases.c.app_id == found.id, releases.c.version == version)).first()
                if target is None:
                    raise NotFound(f"{found.name} has no release v{version}")
                if target.status == "failed":
                    raise BadRequest(f"v{version} failed to deploy: roll back to a release "
                                     "that ran (see `releases`)")
            if target.slug_id is None:
                raise BadRequest(f"v{target.version} has no slug to roll back to")
            slug = self._slug_row(conn, target.slug_id)
            if slug is None:
                raise BadRequest(f"the slug of v{target.version} is gone")
            if slug.pruned:
                raise BadRequest(
                    f"the slug of v{target.version} was pruned (this server keeps the slugs of "
                    f"the last {self.settings.slug_keep} releases): roll back to a newer one")
            config = self._snapshot(conn, found.id, target.version)
            release = self._insert_release(conn, found, slug, config,
                                           f"Rollback to v{target.version}", user.email)
        return release, config

    def release_config(self, app: App, release: Release) -> dict[str, str]:
        """Internal: the decrypted config snapshot of a release."""
        with self.db.read() as conn:
            return self._snapshot(conn, app.id, release.version)

    def release_env(self, app: App, release: Release) -> dict[str, str]:
        """APP_VERSION is "v<N>" (as releases are shown). The platform's
        variables win over the snapshot (config refuses those names anyway)."""
        host_key = self.ssh_host_key(app)
        with self.db.read() as conn:
            env = self._snapshot(conn, app.id, release.version)
            secrets = self._secrets(conn, app)
        node = f"{secrets.node_basename}@127.0.0.1"
        env.update({
            "APP_NAME": app.name,
            "APP_VERSION": f"v{release.version}",
            "RELEASE_COOKIE": secrets.release_cookie,
            "SECRET_KEY_BASE": secrets.secret_key_base,
            "RELEASE_DISTRIBUTION": "name",
            "RELEASE_NODE": node,
            "MY_NODE_NAME": node,
            # For the replica's sshd only: the runner hands it over as a file,
            # never in the app's environment.
            "SHIPWAY_SSH_HOST_KEY": host_key,
        })
        return env

    # --- slugs ---------------------------------------------------------------------
    @staticmethod
    def _to_slug(row: Any) -> Slug:
        return Slug(id=row.id, app_id=row.app_id, storage_key=row.storage_key,
                    sha256=row.sha256, size=row.size, commit=row.commit,
                    process_types=dict(row.process_types or {}),
                    buildpacks=list(row.buildpacks or []), created_at=row.created_at,
                    unpacked_size=row.unpacked_size, pruned=row.pruned_at is not None)

    def _slug_row(self, conn: Connection, slug_id: int) -> Slug | None:
        row = conn.execute(sa.select(slugs).where(slugs.c.id == slug_id)).first()
        return self._to_slug(row) if row else None

    def record_slug(self, app: App, storage_key: str, sha256: str, size: int,
                    commit: str, process_types: dict[str, str],
                    buildpacks: list[str], unpacked_size: int | None = None) -> Slug:
        with self.db.write() as conn:
            slug_id = conn.execute(slugs.insert().values(
                app_id=app.id, storage_key=storage_key, sha256=sha256, size=int(size),
                commit=commit, process_types=dict(process_types),
                buildpacks=list(buildpacks), created_at=now(), unpacked_size=unpacked_size,
            )).inserted_primary_key[0]
            return self._slug_row(conn, slug_id)  # type: ignore[return-value]

    def get_slug(self, slug_id: int) -> Slug:
        with self.db.read() as conn:
            slug = self._slug_row(conn, slug_id)
        if slug is None:
            raise NotFound(f"no slug {slug_id}")
        return slug

    def list_slugs(self, app: App) -> list[Slug]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(slugs).where(slugs.c.app_id == app.id)
                                .order_by(slugs.c.id.desc())).all()
        return [self._to_slug(r) for r in rows]

