"""One log line as the store keeps it and every reader shows it (apart
from logger/store.py, which is at its size limit)."""
from __future__ import annotations

import datetime as dt

import attrs

MAX_LINE = 10_000  # characters kept of one line; the rest is cut and marked
TRUNCATED = " [truncated {} chars]"


def clip(text: str) -> str:
    """One line as stored: no line ending, at most MAX_LINE characters plus
    a marker saying how much was cut."""
    text = text.rstrip("\r\n")
    if len(text) <= MAX_LINE:
        return text
    return text[:MAX_LINE] + TRUNCATED.format(len(text) - MAX_LINE)


@attrs.frozen
class LogLine:
    at: dt.datetime
    source: str  # "app" or "shipway"
    process: str  # "web.3f2a1c", "build", "deploy", "release", "router"
    text: str
    seq: int = 0  # the store's order: one number per line, across restarts
    # stamp(), made once: the follower, each drain and the disk all need it
    # (three datetime formattings a line were a tenth of the server's CPU);
    # a line from Docker comes with it, cut from Docker's stamp (~1 µs less).
    _stamp: str = attrs.field(default="", eq=False, repr=False)

    def stamp(self) -> str:
        """`2026-11-28T13:56:24.538104Z`: the time as every reader shows it."""
        if self._stamp:
            return self._stamp
        at = self.at if self.at.tzinfo is dt.timezone.utc else self.at.astimezone(dt.timezone.utc)
        made = at.isoformat(timespec="microseconds")[:-6] + "Z"
        object.__setattr__(self, "_stamp", made)  # the same text whichever thread wins
        return made

    def format(self) -> str:
        return f"{self.stamp()} {self.source}[{self.process}]: {self.text}"

    def matches(self, source: str | None) -> bool:
        """Heroku's `--source`/`--dyno`: "app", "shipway", a process ("router",
        "build", "deploy", "release", "web.3f2a1c") or a process type ("web")."""
        return (source is None or self.source == source or self.process == source
                or self.process.split(".", 1)[0] == source)
