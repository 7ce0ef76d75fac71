"""Releases a crash left `deploying`, settled at the next start.

A deploy cut off between "the router sends traffic to the new replicas"
and "the release is marked succeeded" leaves the new release serving while
the history says it is still deploying; one cut off earlier leaves the old
release serving. At start, before the runner adopts what runs (adoption
keeps the replicas of the release the controller calls current, and retires
the others), each such release is asked about: the runner says which
release's replicas run and are routed (`IRunner.serving_version`), and the
release becomes succeeded when it is that one (its config becomes the app's,
as a finished deploy would have made it), failed otherwise. Either way the
replicas that serve are the ones adopted, so the app keeps serving.

Two steps, because the router's routes are only known once it has started
(after the ports open): `interrupted_deploys` picks the releases before any
push of this process can be in flight, `settle` decides them later.
"""
from __future__ import annotations

from typing import Callable

import attrs
import sqlalchemy as sa
from twisted.logger import Logger

from controller.db import apps, releases
from core.locks import Busy
from controller.models import App
from controller.service import Controller

log = Logger()
# How long a start waits for another process's deploy of the same app.
LOCK_WAIT = 60.0


@attrs.frozen
class Interrupted:
    app: str
    version: int
    release_id: int


def interrupted_deploys(controller: Controller) -> list[Interrupted]:
    """At start, before the ports open: releases left `deploying` (to settle
    once the runner can be asked), while releases left `pending` and builds
    left running are marked failed at once (nothing of them ever ran)."""
    with controller.db.read() as conn:
        rows = conn.execute(
            sa.select(releases.c.id, releases.c.version, apps.c.name)
            .select_from(releases.join(apps, apps.c.id == releases.c.app_id))
            .where(releases.c.status == "deploying")
            .order_by(releases.c.id)).all()
    controller.fail_interrupted(deploying=False)
    return [Interrupted(app=r.name, version=r.version, release_id=r.id) for r in rows]


def settle(controller: Controller, found: list[Interrupted],
           serving_version: Callable[[str], int | None]) -> dict[tuple[str, int], str]:
    """Decide each interrupted release: succeeded when its replicas are the
    ones serving, failed otherwise (also when the runner cannot tell).
    Returns {(app, version): status}."""
    settled: dict[tuple[str, int], str] = {}
    for item in found:
        # Another process sharing the database may be deploying it right now
        # (it holds the app's lock from the release to the end of the deploy,
        # and settles the release itself before letting go): decide only
        # with the lock held, and `_set` changes a release still deploying.
        try:
            with controller.locks.hold(f"app:{item.app}", wait=True, timeout=LOCK_WAIT):
                status = _decide(controller, item, serving_version)
        except Busy:
            log.warn("controller: v{version} of {app} is still deploying in another process "
                     "after {s:.0f} s; left to it", version=item.version, app=item.app,
                     s=LOCK_WAIT)
            continue
        settled[(item.app, item.version)] = status
    return settled


def _decide(controller: Controller, item: Interrupted,
            serving_version: Callable[[str], int | None]) -> str:
    """The release's status once settled (by this start, or by the process
    whose deploy it was, if that one finished it meanwhile)."""
    try:
        serving = serving_version(item.app)
    except Exception:  # noqa: BLE001 (the engine or router unreachable: not proven)
        log.failure("controller: could not ask which release of {app} serves", app=item.app)
        serving = None
    status = "succeeded" if serving == item.version else "failed"
    try:
        app = controller.app_by_name(item.app)
    except Exception:  # noqa: BLE001 (destroyed meanwhile)
        app = None
    if _set(controller, app, item, status):
        log.warn("controller: release v{version} of {app}, cut off by a stop while it "
                 "deployed, settled as {status} (v{serving} serves)",
                 version=item.version, app=item.app, status=status, serving=serving)
        return status
    with controller.db.read() as conn:
        now_status = conn.execute(sa.select(releases.c.status).where(
            releases.c.id == item.release_id)).scalar()
    return str(now_status or status)


def _set(controller: Controller, app: App | None, item: Interrupted, status: str) -> bool:
    """Only a release still `deploying` changes (a deploy of this process
    may have settled it meanwhile). A succeeded one's config snapshot
    becomes the app's config, as its finished deploy would have done (a
    rollback or a config change that ran)."""
    with controller.db.write() as conn:
        changed = conn.execute(releases.update().where(
            releases.c.id == item.release_id, releases.c.status == "deploying")
            .values(status=status)).rowcount
        if changed and status == "succeeded" and app is not None:
            snapshot = controller._snapshot(conn, app.id, item.version)  # type: ignore[attr-defined]
            controller._replace_config(conn, app, snapshot)  # type: ignore[attr-defined]
    return bool(changed)
