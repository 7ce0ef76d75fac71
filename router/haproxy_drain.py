"""Draining for the HAProxy router (issue 16 item 2): a replica that leaves
is set to `drain` (no new requests) by the route change, and deleted here
once `show stat` reports no session left on it, or at its deadline (then
what is left is cut), so that the runner stops its container only after
`wait_drained`.
"""
from __future__ import annotations

import time

from twisted.logger import Logger

log = Logger()


class DrainMixin:
    """For HAProxyRouter (which provides _lock, _draining, _drain_wakeup,
    runtime)."""

    def wait_drained(self, timeout: float) -> bool:
        """Wait until every leaving replica has been drained and deleted."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._draining:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._drain_wakeup.wait(min(left, 0.05))
            return True

    def _drain_loop(self) -> None:
        """Delete each draining server once its sessions reach 0 (or at its
        deadline, cutting what is left)."""
        while True:
            with self._lock:
                if not self._draining:
                    self._drain_wakeup.wait(1.0)
                    continue
                backends = {b for b, _ in self._draining}
            sessions = {}
            for b in backends:
                try:
                    sessions[b] = self.runtime.server_sessions(b)
                except OSError:
                    sessions[b] = {}
            with self._lock:
                now = time.monotonic()
                for (b, n), (deadline, _) in list(self._draining.items()):
                    left = sessions.get(b, {}).get(n)
                    if left is None or left == 0 or now > deadline:
                        self._delete_server(b, n, cut=bool(left))
                        self._draining.pop((b, n), None)
                self._drain_wakeup.notify_all()
                self._drain_wakeup.wait(0.1)

    def _delete_server(self, backend: str, name: str, cut: bool) -> None:
        try:
            cmds = [f"set server {backend}/{name} state maint"]
            if cut:
                cmds.append(f"shutdown sessions server {backend}/{name}")
            self.runtime.run(cmds)
            if not name.startswith("s"):  # declared slots stay, free, in maintenance
                self.runtime.run([f"del server {backend}/{name}"])
        except (OSError, RuntimeError) as e:
            log.warn("router: could not delete drained server {b}/{n}: {e}",
                     b=backend, n=name, e=e)
