"""Revocations: what the controller tells the parts that hold sessions open
(gitd's SSH connections and `ps:ssh` tunnels) when a user's right ends, so
they end those sessions at once instead of when the user next connects."""
from __future__ import annotations

import threading
from typing import Callable

import attrs
from twisted.logger import Logger

log = Logger(namespace="shipway.controller")


@attrs.frozen
class Revocation:
    """`user_id` lost access to `app` (None: to every app), or the SSH key
    `key_fingerprint` (None: any of the user's keys) was removed."""

    user_id: int
    app: str | None = None
    key_fingerprint: str | None = None


class RevocationHooks:
    """Mixed into the controller: `on_revoke` registers a hook (any thread;
    hooks must not block), `_revoked` calls them after the change commits."""

    def on_revoke(self, hook: Callable[[Revocation], None]) -> None:
        with _guard:
            self.__dict__.setdefault("_revoke_hooks", []).append(hook)

    def _revoked(self, event: Revocation) -> None:
        with _guard:
            hooks = list(self.__dict__.get("_revoke_hooks", ()))
        for hook in hooks:
            try:
                hook(event)
            except Exception:  # noqa: BLE001 - one part's failure must not undo the change
                log.failure("revocation hook failed for {event}", event=event)


_guard = threading.Lock()
