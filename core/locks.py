"""Named locks that hold across every `shipway server` sharing one database.

Several server processes may serve one database (PostgreSQL), or share one
data dir (SQLite). What guards an app's state (a push from build to deploy,
the making of a release and its deploy, scale, restart, resize) must
therefore exclude the other processes too, not only this process's threads.
One module, two layers per lock:

- in this process: an owner thread and a hold count, so a thread that
  already holds a lock takes it again at once (the release path calls the
  deployer, which takes the same lock) and the other threads wait or fail;
- across processes: an `fcntl` lock on a file under the data dir
  (`FileLockBackend`, with SQLite) or a PostgreSQL session advisory lock on a
  dedicated connection (`PostgresLockBackend`). The kernel, or the database
  when the connection drops, releases it if the holding process dies, so a
  crash never leaves an app locked.

Two modes: try (`hold(..., wait=False)`: `Busy` at once, which a pusher
prefers to hanging behind a long build) and wait (block, optionally up to a
timeout, calling `on_wait` once so a user hears why nothing happens).

`KeyedThreadLocks` is the in-process kind, for parts that own their state
alone (a runner's containers, a builder's cache volumes): see its docstring.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

POLL_SECONDS = 0.05  # how often a timed wait retries the cross-process lock


class Busy(Exception):
    """A lock asked for in try mode (or waited for past its timeout) is held
    elsewhere. The message is the one-line answer a user sees."""

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"{name} is busy")
        self.name = name


class LockBackend(Protocol):
    """The cross-process layer. `acquire` returns a handle or None (not
    taken: non-blocking, or the timeout passed); `release` drops it."""

    def acquire(self, name: str, blocking: bool, timeout: float | None) -> Any | None: ...

    def release(self, handle: Any) -> None: ...


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None or timeout < 0 else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class FileLockBackend:
    """`flock` on `<lock_dir>/<name>.lock`. flock belongs to the open file
    description, so two descriptors conflict even inside one process, and
    closing the descriptor (or the process dying) drops the lock."""

    def __init__(self, lock_dir: Path) -> None:
        self.lock_dir = Path(lock_dir)

    def _path(self, name: str) -> Path:
        # Names are ours ("app:demo"); still keep the file name plain and
        # unique: a readable part plus a short hash of the exact name.
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80]
        digest = hashlib.blake2b(name.encode(), digest_size=6).hexdigest()
        return self.lock_dir / f"{safe}-{digest}.lock"

    def acquire(self, name: str, blocking: bool, timeout: float | None) -> int | None:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if blocking and (timeout is None or timeout < 0):
                fcntl.flock(fd, fcntl.LOCK_EX)
                return fd
            deadline = _deadline(timeout if blocking else 0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    left = _remaining(deadline)
                    if not left:
                        os.close(fd)
                        return None
                    time.sleep(min(POLL_SECONDS, left))
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise

    def release(self, handle: int) -> None:
        os.close(handle)  # closing the descriptor drops the flock


def advisory_key(name: str) -> int:
    """A signed 64-bit key for pg_advisory_lock, from the lock's name (a hash:
    a collision only makes two locks one, never lets two holders in)."""
    digest = hashlib.blake2b(b"shipway:" + name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresLockBackend:
    """A session advisory lock on a connection of its own per held lock:
    the lock lives exactly as long as that connection, so a dead holder's
    lock goes with its connection, and no pooled connection ever carries a
    stray lock back to the pool."""

    def __init__(self, database_url: str) -> None:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        self._sa = sa
        for prefix in ("postgresql://", "postgres://"):  # psycopg 3, as the store
            if database_url.startswith(prefix):
                database_url = "postgresql+psycopg://" + database_url[len(prefix):]
        self.engine = sa.create_engine(database_url, poolclass=NullPool,
                                       isolation_level="AUTOCOMMIT")

    def acquire(self, name: str, blocking: bool, timeout: float | None) -> Any | None:
        sa = self._sa
        key = advisory_key(name)
        conn = self.engine.connect()
        try:
            if not blocking:
                got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            elif timeout is None or timeout < 0:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                got = True
            else:
                got = self._timed(conn, key, timeout)
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        return conn

    def _timed(self, conn: Any, key: int, timeout: float) -> bool:
        """pg_advisory_lock under `lock_timeout` (it applies to advisory
        locks): the server wakes the waiter, no polling."""
        sa = self._sa
        conn.execute(sa.text(f"SET lock_timeout = {max(1, int(timeout * 1000))}"))
        try:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        except sa.exc.OperationalError as e:
            if getattr(e.orig, "sqlstate", None) == "55P03":  # lock_not_available
                return False
            raise
        conn.execute(sa.text("SET lock_timeout = 0"))
        return True

    def release(self, handle: Any) -> None:
        try:
            handle.execute(self._sa.text("SELECT pg_advisory_unlock_all()"))
        finally:
            handle.close()  # closing the session would drop it anyway


class NamedLock:
    """One lock: exclusive across threads and processes; re-entrant within
    the holding thread when `reentrant` (else a second take in the holding
    thread fails like any other). acquire/release/`with` as threading.RLock."""

    def __init__(self, name: str, backend: LockBackend, reentrant: bool = True) -> None:
        self.name = name
        self.backend = backend
        self.reentrant = reentrant
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._count = 0
        self._handle: Any = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        deadline = _deadline(timeout if blocking else 0)
        with self._cond:
            if self._owner == me:
                if self.reentrant:
                    self._count += 1
                    return True
                if blocking and deadline is None:
                    raise RuntimeError(f"{self.name}: taken twice by one thread")
                return False
            while self._owner is not None:
                left = _remaining(deadline)
                if not blocking or left == 0:
                    return False
                self._cond.wait(left)
            self._owner = me  # reserved: other threads of this process wait here
        try:
            left = _remaining(deadline)
            handle = self.backend.acquire(self.name, blocking and left != 0,
                                          None if left is None else left)
        except BaseException:
            self._give_back()
            raise
        if handle is None:
            self._give_back()
            return False
        with self._cond:
            self._handle, self._count = handle, 1
        return True

    def _give_back(self) -> None:
        with self._cond:
            self._owner = None
            self._cond.notify()

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError(f"{self.name}: released by a thread that does not hold it")
            self._count -= 1
            if self._count:
                return
            handle, self._handle = self._handle, None
            try:
                self.backend.release(handle)
            finally:
                self._owner = None
                self._cond.notify()

    def held_here(self) -> bool:
        """True when the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def __enter__(self) -> "NamedLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Locks:
    """Every named lock of this process, over one cross-process backend.
    One instance per process (built by the composition root), so that a
    name maps to one NamedLock and re-entrance works across components."""

    def __init__(self, backend: LockBackend) -> None:
        self.backend = backend
        self._guard = threading.Lock()
        self._locks: dict[str, NamedLock] = {}

    def get(self, name: str, reentrant: bool = True) -> NamedLock:
        with self._guard:
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = NamedLock(name, self.backend, reentrant)
            return lock

    @contextlib.contextmanager
    def hold(self, name: str, *, wait: bool = False, timeout: float | None = None,
             on_wait: Callable[[], None] | None = None, busy: str | None = None,
             reentrant: bool = True) -> Iterator[NamedLock]:
        """Hold `name` for the block. Try mode (default): `Busy(busy)` at
        once when held elsewhere. Wait mode: block (up to `timeout` seconds,
        then `Busy`), first calling `on_wait` if the lock is not free."""
        lock = self.get(name, reentrant)
        if not lock.acquire(blocking=False):
            if not wait:
                raise Busy(name, busy)
            if on_wait is not None:
                on_wait()
            if not lock.acquire(timeout=-1 if timeout is None else timeout):
                raise Busy(name, busy)
        try:
            yield lock
        finally:
            lock.release()


def lock_backend(database_url: str, data_dir: Path) -> LockBackend:
    """PostgreSQL advisory locks on PostgreSQL; else file locks under the
    data dir (SQLite: the processes sharing the database share the dir)."""
    if database_url.startswith(("postgresql", "postgres")):
        return PostgresLockBackend(database_url)
    return FileLockBackend(Path(data_dir) / "locks")


def make_locks(settings: Any) -> Locks:
    """The process's locks for `settings` (core.settings.Settings)."""
    return Locks(lock_backend(settings.effective_database_url, settings.data_dir))


class KeyedThreadLocks:
    """Per-key re-entrant locks of this process only. For a part that alone
    owns what the key names: a runner's containers of an app (labelled with
    the runner's instance, which no other process touches) or a builder's
    standby container and cache volume of an app (named per instance too).
    Such locks only order this process's threads (a deploy and the
    supervisor); the app's state itself is guarded across processes by the
    controller's `Locks` ("app:<name>"), which every change of what runs
    holds before it reaches the runner."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}

    def __call__(self, key: str) -> threading.RLock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.RLock()
            return lock
