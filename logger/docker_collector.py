"""Feeds the log store from the Docker runner's containers: every run
container of this instance is followed from its first line (Docker keeps a
container's output in its own log files), found at start-up and then as
Docker reports each container start. A server restart therefore refills the
history of the replicas still running.

One thread per followed container and one for Docker's event stream; a
follower ends with its container.
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Iterator

import docker
import docker.errors
from twisted.logger import Logger

from logger.store import LogStore
from runner.containers import ROLE
from core.settings import Settings

log = Logger()
# Bytes of one unfinished line held while reading (a 1 MB line is cut here;
# Docker's json-file driver has already stored it whole, so the container
# never waits on us: the driver decouples its output from our reading).
_MAX_PARTIAL = 64 * 1024
# Most bytes taken from Docker's connection per read: what has arrived, up
# to this. Under a burst the reading thread waits for the GIL after every
# read (the fan-out, drains and disk threads hold it in turn), so each read
# takes all that is there rather than 64 KiB of it.
_READ = 1 << 20


def parse_docker_time(stamp: str) -> dt.datetime | None:
    """`2026-11-28T13:56:24.538104258Z` (Docker's times, in nanoseconds;
    trailing zeros of the fraction left out)."""
    if len(stamp) == 30 and stamp[-1] == "Z":  # the usual shape: one slice, one parse
        try:
            return dt.datetime.fromisoformat(stamp[:26] + "+00:00")
        except ValueError:
            return None
    if not stamp.endswith("Z"):
        return None
    whole, _, fraction = stamp[:-1].partition(".")
    try:
        return dt.datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")
    except ValueError:
        return None


def parse_docker_text(line: str) -> tuple[dt.datetime | None, str]:
    """`STAMP text` → (time, text); a line without a stamp is kept whole."""
    line = line.rstrip("\r")
    stamp, sep, text = line.partition(" ")
    at = parse_docker_time(stamp) if sep else None
    return (at, text) if at is not None else (None, line)


def parse_docker_line(raw: bytes) -> tuple[dt.datetime | None, str]:
    """`2026-11-28T13:56:24.538104258Z text` (Docker's `timestamps=True`)."""
    return parse_docker_text(raw.decode("utf-8", "replace"))


def parse_docker_lines(raw: bytes) -> list[tuple[dt.datetime | None, str]]:
    """The complete lines of one read, decoded at once (a newline never
    splits a UTF-8 character, so invalid bytes are replaced exactly as line
    by line): per-line decoding and calls were most of the collector's time
    per line under a burst (bench/logs.py)."""
    return [parse_docker_text(text) for text in raw.decode("utf-8", "replace").split("\n")]


def parse_docker_chunk(raw: bytes) -> tuple[list[tuple[dt.datetime | None, str]], list[str]]:
    """`parse_docker_lines`, and each line's `LogLine.stamp()` cut from
    Docker's own stamp text (nanoseconds to microseconds: the same text
    formatting the parsed time gives, for ~0.1 µs instead of ~1-3 µs)."""
    items, stamps = [], []
    for text in raw.decode("utf-8", "replace").split("\n"):
        at, rest = parse_docker_text(text)
        items.append((at, rest))
        # Docker leaves out a fraction's trailing zeros: only the full
        # nanosecond shape (a 30-character stamp, so its space is the 31st
        # character) is cut; the store formats the others itself. A shorter
        # stamp's 30th character is the app's text, which may well be a Z.
        stamps.append(text[:26] + "Z" if at is not None and text[29:31] == "Z " else "")
    return items, stamps


class DockerLogCollector:
    def __init__(self, settings: Settings, store: LogStore) -> None:
        self.settings = settings
        self.store = store
        self._following: set[str] = set()
        # The newest line taken from each container: a container started
        # again (by the engine) is read on from there, not repeated.
        self._last_seen: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._events: Any = None
        self._client: docker.DockerClient | None = None

    @property
    def labels(self) -> list[str]:
        return [f"shipway.instance={self.settings.instance}", f"shipway.role={ROLE}"]

    def start(self) -> None:
        threading.Thread(target=self._watch, name="logs-events", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        if self._events is not None:
            self._events.close()

    def _watch(self) -> None:
        """Follow what runs, then what starts; if the engine's event stream
        breaks (an engine restart), subscribe and look again."""
        while not self._stopping.is_set():
            try:
                self._client = self._client or docker.from_env(timeout=60)
                # Subscribe before listing: a container started in between
                # is seen twice, never missed (`_follow` ignores the second).
                self._events = self._client.events(decode=True, filters={
                    "type": "container", "event": "start", "label": self.labels})
                for row in self._client.api.containers(filters={"label": self.labels}):
                    self._follow(row["Id"], row.get("Labels") or {})
                for event in self._events:
                    attributes = (event.get("Actor") or {}).get("Attributes") or {}
                    if event.get("id"):
                        self._follow(event["id"], attributes)
            except Exception as exc:  # noqa: BLE001 (closed at stop, or the engine went away)
                if not self._stopping.is_set():
                    log.warn("logs: Docker event stream ended ({error}); retrying",
                             error=str(exc))
            self._stopping.wait(5)

    def _follow(self, container_id: str, labels: dict[str, str]) -> None:
        app = labels.get("shipway.app")
        if not app:
            return
        with self._lock:
            if container_id in self._following:
                return
            self._following.add(container_id)
        process = f"{labels.get('shipway.process', 'run')}.{container_id[:6]}"
        threading.Thread(target=self._read, args=(container_id, app, process),
                         name=f"logs-{container_id[:12]}", daemon=True).start()

    def _read(self, container_id: str, app: str, process: str) -> None:
        assert self._client is not None
        buf = b""
        last: dt.datetime | None = None

        def take(raw: bytes) -> None:
            """The complete lines of one read, parsed and queued at once."""
            items, stamps = parse_docker_chunk(raw)
            if last is not None:
                kept = [i for i, (at, _) in enumerate(items) if at is None or at > last]
                items, stamps = [items[i] for i in kept], [stamps[i] for i in kept]
            newest = next((at for at, _ in reversed(items) if at is not None), None)
            if newest is not None:
                self._last_seen[container_id] = newest
            if items:
                self.store.add_many(app, "app", process, items, stamps)

        try:
            # After a platform restart the history is on disk already: go on
            # from the newest stored line of this container, not from its
            # start. (Inside the try: whatever fails here must still let
            # this container be followed again.)
            last = self._last_seen.get(container_id) or self.store.last_at(app, process)
            since: dict[str, Any] = ({"since": last.timestamp()} if last is not None
                                    else {"tail": self.store.lines_per_app})
            stream = _log_stream(self._client, container_id, since)
            for chunk in stream:
                if self._stopping.is_set():
                    break
                head, newline, rest = chunk.rpartition(b"\n")
                if newline:
                    take(buf + head)
                    buf = rest
                else:
                    buf += rest
                if len(buf) > _MAX_PARTIAL:
                    # A line longer than the store keeps: bounded memory, the
                    # rest of it is cut (the store marks how much it kept).
                    buf = buf[:_MAX_PARTIAL]
            if buf:
                take(buf)
        except (docker.errors.DockerException, OSError) as exc:
            if not self._stopping.is_set():
                log.info("logs: stopped following {id}: {error}", id=container_id[:12],
                         error=str(exc))
        except Exception:  # noqa: BLE001 (a bug: said, and the container is followed again later)
            log.failure("logs: reading {id} failed", id=container_id[:12])
        finally:
            with self._lock:
                self._following.discard(container_id)


def _log_stream(client: docker.DockerClient, container_id: str,
                since: dict[str, Any]) -> Iterator[bytes]:
    """The container's output (stdout and stderr, timestamped, followed) in
    large reads. docker-py's own stream reads Docker's 8-byte frame header
    and then the payload of every line separately; urllib3's `read1` still
    returns one HTTP chunk per call, and Docker sends each line as a chunk:
    ~10 µs of Python per line, the collector's limit under a burst
    (bench/logs.py). So this reads the connection's buffered bytes as they
    arrive, up to `_READ` at a time, and undoes the chunked encoding and
    Docker's frames itself."""
    api = client.api
    params = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": 1,
              "tail": since.get("tail", "all")}
    if "since" in since:
        params["since"] = since["since"]
    response = api._get(api._url("/containers/{0}/logs", container_id), params=params,
                        stream=True)
    api._raise_for_status(response)
    api._disable_socket_timeout(api._get_raw_response_socket(response))
    raw = response.raw
    reader = getattr(getattr(raw, "_fp", None), "fp", None)  # http.client's buffered reader
    body = (_unchunk(reader) if raw.chunked and reader is not None
            else iter(lambda: raw.read1(_READ), b""))
    buf = b""
    for chunk in body:
        buf += chunk
        out, at = [], 0
        while len(buf) - at >= 8:
            end = at + 8 + int.from_bytes(buf[at + 4:at + 8], "big")
            if len(buf) < end:
                break
            out.append(buf[at + 8:end])
            at = end
        buf = buf[at:]
        if out:
            yield b"".join(out)


def _unchunk(reader: Any) -> Iterator[bytes]:
    """HTTP/1.1 chunked encoding undone in bulk: what has arrived (one
    `read1`), as the payload of every whole chunk in it; ends at the last
    chunk or when the connection closes."""
    buf = b""
    while True:
        data = reader.read1(_READ)
        if not data:
            return
        buf += data
        out, at = [], 0
        while True:
            eol = buf.find(b"\r\n", at)
            if eol < 0:
                break
            size = int(buf[at:eol].split(b";", 1)[0], 16)
            if size == 0:
                if out:
                    yield b"".join(out)
                return
            end = eol + 2 + size
            if len(buf) < end + 2:
                break
            out.append(buf[eol + 2:end])
            at = end + 2
        buf = buf[at:]
        if out:
            yield b"".join(out)
