"""Slug pruning: an app's slugs are deleted from the slug store once no
release among its newest `settings.slug_keep` (SHIPWAY_SLUG_KEEP, default 10)
and no replica of it still uses them.

What is kept, per app:
- the slugs of its newest N releases that did not fail (what a rollback may
  want), and of any release still pending or deploying;
- the slug of the current (newest succeeded) release, always;
- the slug of every release a replica of the app runs as the runner sees
  it now (`ps`'s source: starting, running and stopping containers alike),
  so a replica that supervision restarts finds its slug.
When what runs cannot be known (no runner in this process), nothing is
pruned. Rows stay: a pruned slug keeps its row with `pruned_at` set and its
releases keep their history, but a rollback to one is refused.

Keys are per content ("<app>/<sha256>.tar.gz"): two slug rows of one key
share the file, which is deleted only when neither is kept.
"""
from __future__ import annotations

from typing import Any, Callable

import sqlalchemy as sa

from controller.access import lock_app
from controller.base import log, silent
from controller.db import now, releases, slugs
from controller.domains import DomainsMixin
from controller.models import App
from storage.interface import ISlugStore

KEPT_STATUSES = ("succeeded", "pending", "deploying")


def slugs_to_prune(release_rows: list[Any], slug_rows: list[Any], keep: int,
                   running_versions: set[int]) -> list[Any]:
    """The slug rows (not yet pruned) whose files may go: the rule above.
    `release_rows` carry version, slug_id and status; `slug_rows` id and
    storage_key."""
    newest_first = sorted(release_rows, key=lambda r: r.version, reverse=True)
    kept = [r for r in newest_first if r.status != "failed"][:keep]
    kept += [r for r in newest_first if r.status in ("pending", "deploying")
             or r.version in running_versions]
    current = next((r for r in newest_first if r.status == "succeeded"), None)
    if current is not None:
        kept.append(current)
    kept_ids = {r.slug_id for r in kept if r.slug_id is not None}
    kept_keys = {s.storage_key for s in slug_rows if s.id in kept_ids}
    return [s for s in slug_rows if s.id not in kept_ids and s.storage_key not in kept_keys]


class SlugPruningMixin(DomainsMixin):
    def running_versions(self, app: App) -> set[int] | None:
        """The release versions the app's replicas run now, as `ps` finds
        them (the runner behind the deployer); None when this process has
        no runner to ask."""
        runner = getattr(self._deployer, "runner", None)
        if runner is None or not hasattr(runner, "replicas"):
            return None
        return {r.version for r in runner.replicas(app.name)}

    def prune_slugs(self, app: App, store: ISlugStore,
                    output: Callable[[str], None] | None = None) -> list[str]:
        """Delete the app's slugs nothing keeps (see the module doc) from
        `store` (an ISlugStore); returns the keys deleted. Call it with the
        app's release lock held (`serialized`), so no rollback picks a slug
        while it goes. The rows are marked before the files go: a crash in
        between leaves a file behind, never a row naming a missing file."""
        output = output or silent
        running = self.running_versions(app)
        if running is None:
            log.info("controller: not pruning slugs of {app}: no runner to ask what runs",
                     app=app.name)
            return []
        keep = max(1, int(self.settings.slug_keep))
        with self.db.write() as conn:
            lock_app(conn, app)
            release_rows = conn.execute(sa.select(releases.c.version, releases.c.slug_id,
                                                  releases.c.status)
                                        .where(releases.c.app_id == app.id)).all()
            slug_rows = conn.execute(sa.select(slugs.c.id, slugs.c.storage_key)
                                     .where(slugs.c.app_id == app.id,
                                            slugs.c.pruned_at.is_(None))).all()
            doomed = slugs_to_prune(release_rows, slug_rows, keep, running)
            if doomed:
                conn.execute(slugs.update().where(slugs.c.id.in_([s.id for s in doomed]))
                             .values(pruned_at=now()))
        keys = sorted({s.storage_key for s in doomed})
        for key in keys:
            try:
                store.delete(key)
            except Exception:  # noqa: BLE001 (a file left behind is only space)
                log.failure("controller: could not delete slug {key} of {app}",
                            key=key, app=app.name)
        if keys:
            log.info("controller: pruned {n} slug(s) of {app}, keeping the last {keep} "
                     "releases' and the running ones", n=len(keys), app=app.name, keep=keep)
            output(f"-----> Pruned {len(keys)} old slug(s) (the last {keep} releases keep "
                   "theirs)")
        return keys
