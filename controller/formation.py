"""Formation: how many replicas of each process type should run.

The desired counts are state here; the deployer makes them true. An app
with no rows runs one `web` replica (the default formation).
"""
from __future__ import annotations

import math
import re

import attrs
import sqlalchemy as sa

from controller.access import lock_app
from controller.base import silent
from controller.db import apps, formations
from controller.errors import BadRequest
from controller.models import App, User
from controller.service import Output
from controller.config import ConfigMixin

DEFAULT_FORMATION = {"web": 1}
MAX_REPLICAS = 100
MIN_REPLICA_SIZE = 0.1  # GiB: below it not even a BEAM boots


def check_size(size: object, largest: float) -> float | None:
    """A replica size as stored: None (the server's defaults) or a number of
    GiB from MIN_REPLICA_SIZE to `largest`."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not math.isfinite(size) \
            or not MIN_REPLICA_SIZE <= size <= largest:
        raise BadRequest(f"replica size must be a number from {MIN_REPLICA_SIZE:g} to "
                         f"{largest:g} (GiB of memory and CPUs), or null for the server's "
                         "default")
    return float(size)


PROCESS_TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}\Z")


class FormationMixin(ConfigMixin):
    def get_formation(self, app: App) -> dict[str, int]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(formations.c.process_type, formations.c.count)
                                .where(formations.c.app_id == app.id)
                                .order_by(formations.c.process_type)).all()
        result = dict(DEFAULT_FORMATION)
        result.update({r.process_type: r.count for r in rows})
        return result

    def scale(self, user: User, app: str, counts: dict[str, int],
              output: Output | None = None) -> dict[str, int]:
        """Stores the new counts, then asks the deployer to apply them (when
        one is wired; otherwise the runner applies them when it starts)."""
        if not isinstance(counts, dict) or not counts:
            raise BadRequest("give at least one process type and count")
        for ptype, count in counts.items():
            if not isinstance(ptype, str) or not PROCESS_TYPE_RE.match(ptype):
                raise BadRequest(f"invalid process type {str(ptype)[:40]!r}")
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_REPLICAS:
                raise BadRequest(f"replica count for {ptype} must be an integer from 0 to "
                                 f"{MAX_REPLICAS}")
        with self.db.write() as conn:
            found = self._authorize(conn, user, app, "write")
            current = self._current_row(conn, found)
            known = set(current.process_types or {}) if current is not None else set()
            unknown = sorted(set(counts) - known) if known else []
            if unknown:
                raise BadRequest(f"{found.name} has no process type {', '.join(unknown)} "
                                 f"(it has {', '.join(sorted(known))})")
            for ptype, count in counts.items():
                conn.execute(formations.delete().where(formations.c.app_id == found.id,
                                                       formations.c.process_type == ptype))
                conn.execute(formations.insert().values(app_id=found.id, process_type=ptype,
                                                        count=count))
            self.record_activity(found, user.email, "scale",  # issue 18
                                 "scaled " + ", ".join(f"{p}={c}" for p, c in sorted(counts.items())),
                                 {"formation": dict(counts)}, conn=conn)
        if self._deployer is not None:
            with self.serialized(found, output):
                self._deployer.apply_formation(found, output or silent)
        return self.get_formation(found)

    def resize(self, user: User, app: str, size: object,
               output: Output | None = None) -> App:
        """Sets the size of each of the app's replicas (None: the server's
        defaults) and replaces them with replicas of that size, through the
        deploy path (health-checked, zero downtime). If those do not become
        healthy (too little memory to boot, say), the old ones keep serving
        and the size goes back to what it was before DeployFailed propagates.
        Replicas are labelled with their size: a server killed during a
        resize finds old-size ones at its next start and replaces them."""
        wanted = check_size(size, self.settings.limits.max_replica_size)
        with self.serialized(self.get_app(user, app, "write"), output):
            return self._resize_locked(user, app, wanted, output)

    def _resize_locked(self, user: User, app: str, wanted: float | None,
                       output: Output | None) -> App:
        with self.db.write() as conn:
            found = self._authorize(conn, user, app, "write")
            lock_app(conn, found)
            previous = conn.execute(sa.select(apps.c.replica_size)
                                    .where(apps.c.id == found.id)).scalar_one()
            conn.execute(apps.update().where(apps.c.id == found.id)
                         .values(replica_size=wanted))
            self.record_activity(found, user.email, "resize",  # issue 18
                                 f"resized replicas to {wanted if wanted is not None else 'default'}",
                                 {"size": wanted}, conn=conn)
        resized = attrs.evolve(found, replica_size=wanted)
        if self._deployer is not None and previous != wanted:
            try:
                self._deployer.restart(resized, output or silent)
            except Exception:
                with self.db.write() as conn:
                    conn.execute(apps.update().where(apps.c.id == found.id)
                                 .values(replica_size=previous))
                raise
        return resized

    def restart(self, user: User, app: str, output: Output | None = None) -> None:
        found = self.get_app(user, app, "write")
        with self.serialized(found, output):
            self.deployer().restart(found, output or silent)
        self.record_activity(found, user.email, "restart", "restarted the replicas")  # issue 18
