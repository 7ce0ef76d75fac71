"""Formation: how many replicas of each process type should run.

The desired counts are state here; the deployer makes them true. An app
with no rows runs one `web` replica (the default formation).
"""
from __future__ import annotations

import re

import sqlalchemy as sa

from controller.base import silent
from controller.db import formations
from controller.errors import BadRequest
from controller.models import App, User
from controller.service import Output
from controller.config import ConfigMixin

DEFAULT_FORMATION = {"web": 1}
MAX_REPLICAS = 100
PROCESS_TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


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
        if self._deployer is not None:
            self._deployer.apply_formation(found, output or silent)
        return self.get_formation(found)

    def restart(self, user: User, app: str, output: Output | None = None) -> None:
        found = self.get_app(user, app, "write")
        self.deployer().restart(found, output or silent)
