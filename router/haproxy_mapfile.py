"""Writes the HAProxy router's host map file behind route changes.

The map (`hostname slot-backend`, one line per name) is the only router
file that grows with the number of apps: rewriting it inside each change
cost ~20 ms at 10,000 apps (bench/route_scale.py). The change itself is
already applied at run time (`add map`/`del map`), and the file only serves
a proxy started again, so it is written by a thread shortly after, several
changes coalesced into one write. Each write carries a generation: an older
snapshot never replaces a newer file. `flush()` writes at once (start()
calls it before it reads the files back).
"""
from __future__ import annotations

import os
import threading
from typing import Callable

from router.haproxy_conf import render_map

COALESCE = 0.05  # seconds a change waits for others before the file is written


class MapWriter:
    def __init__(self, path: str, state_lock: threading.RLock,
                 entries: Callable[[], list[tuple[str, str]]]) -> None:
        self.path, self._state_lock, self._entries = path, state_lock, entries
        self._file_lock = threading.Lock()  # a leaf: no other lock taken inside
        self._gen = 0  # changes seen (under the state lock)
        self._written = 0  # generation of the file on disk
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    def changed(self) -> None:
        """Called under the state lock after a change of names."""
        self._gen += 1
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                             name="haproxy-map-writer")
            self._thread.start()
        self._wakeup.set()

    def flush(self) -> None:
        with self._state_lock:
            if self._gen == self._written:
                return
            gen, entries = self._gen, self._entries()
        text = render_map(entries)
        tmp = f"{self.path}.{gen}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        with self._file_lock:
            if gen > self._written:
                os.replace(tmp, self.path)
                self._written = gen
            else:
                os.unlink(tmp)

    def _loop(self) -> None:
        while True:
            self._wakeup.wait()
            threading.Event().wait(COALESCE)
            self._wakeup.clear()
            try:
                self.flush()
            except OSError:
                pass  # written at the next change or start
