"""The managed HAProxy process: launch, adopt (pid file), reload, stop.

Master-worker mode (`-W`, master socket) as its own daemon (`-D`), so it
outlives `shipway server`. A reload (SIGUSR2 to the master) re-executes the
master, whose new worker takes the listening sockets over; it is used only
for the router's own settings, never for a route change. The old worker
hands its idle clients' next requests to the new one
(haproxy_handover).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.logger import Logger

from router.haproxy_conf import Layout
from router.haproxy_runtime import Runtime

log = Logger()

START_TIMEOUT = 15.0


class RouterError(RuntimeError):
    """HAProxy refused a configuration or did not come up."""


def bound_ports(main_conf: str) -> frozenset[int]:
    """The ports a rendered `00-main.cfg` binds."""
    return frozenset(int(p) for p in re.findall(r"^\s*bind \S*:(\d+)\b", main_conf, re.MULTILINE))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z"
    except (ProcessLookupError, OSError):
        return False


MAXCONN_CAP = 20000


# A unix socket's path is at most 107 bytes, and HAProxy binds it under a
# temporary name first (`<path>.<pid>.tmp`): room for the longest.
_MAX_HANDOVER_DIR = 107 - len("/handover-https.sock.4194304.tmp")


def worker_user() -> str | None:
    """Who the workers run as when the master is root: Debian's `haproxy`
    system user (made by its package, used by nothing else), else nobody.
    Whoever runs as that user can reach the handover sockets
    (ensure_handover_dir): a user of its own keeps that to HAProxy."""
    if os.geteuid() != 0:
        return None
    import grp
    import pwd

    try:
        pwd.getpwnam("haproxy")
        grp.getgrnam("haproxy")
        return "haproxy haproxy"
    except KeyError:
        return "nobody nogroup"


def handover_dir(router_dir: str, shared_with_workers: bool) -> str:
    """Where a router's handover sockets live. The one the proxy's
    configuration already names, if any: the choice below depends on the
    environment (XDG_RUNTIME_DIR, TMPDIR), which differs between a service,
    an interactive `stop-router` and sudo, and a changed path would make
    the next start reload onto sockets nothing listens on. Else, workers of
    this user: in the router's own directory if its path is short enough,
    else in the user's runtime directory (or the temp directory). Workers
    of another user (the master is root): they must reach the sockets, and
    the data directory is usually closed to them (/root), so in /run, where
    only root creates entries (the temp directory if /run is not writable)."""
    router_dir = os.path.abspath(router_dir)
    try:
        conf = Path(router_dir, "conf.d", "00-main.cfg").read_text()
        match = re.search(r"^\s*bind unix@(\S+)/handover-http\.sock ", conf, re.MULTILINE)
        if match:
            return match.group(1)
    except OSError:
        pass
    own = os.path.join(router_dir, "run")
    if not shared_with_workers and len(os.fsencode(own)) <= _MAX_HANDOVER_DIR:
        return own
    digest = hashlib.sha256(os.fsencode(router_dir)).hexdigest()[:16]
    if shared_with_workers:
        base = "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()
    else:
        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return f"{base}/shipway-haproxy-{digest}"


def ensure_handover_dir(path: str, shared_with_workers: bool) -> None:
    """Create the directory, ours alone: others may pass through it (0711)
    only if the workers run as another user; the sockets themselves are
    0600, owned by the workers' user (worker_user), whose processes could
    connect and claim any client address. A path someone else made first
    (a shared temp directory) is refused rather than used."""
    if len(os.fsencode(path)) > _MAX_HANDOVER_DIR:
        raise RouterError(f"{path} is too long for the router's unix sockets "
                          f"(at most {_MAX_HANDOVER_DIR} bytes): set XDG_RUNTIME_DIR "
                          "or TMPDIR to a shorter directory")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise RouterError(f"{path} is not a directory of this user's: the router "
                          "will not put its sockets there (remove it)")
    os.chmod(path, 0o711 if shared_with_workers else 0o700)


def maxconn() -> int:
    """How many client connections HAProxy may hold with the file limit it
    will inherit from this process (raise_soft_nofile() runs first).

    HAProxy's own rule counts two descriptors per connection (client and
    server side) and, with `strict-limits` (its default), refuses to start
    when the limit is lower. But an idle kept-alive client holds one
    descriptor: with a hard limit of 20,000 (raising it needs
    CAP_SYS_RESOURCE) that rule stops at 9,986 connections, short of the
    issue's 10,000 idle ones. So two thirds of the descriptors: every
    connection idle, or half of them with a request in flight at once, fit.
    Past that HAProxy pauses accepting, or answers 503 for want of an
    upstream socket (EMFILE), and never stops; `no strict-limits`
    (haproxy_conf.render_main) lets it start with this budget, whatever
    limit a reload or an adopted master actually has.
    """
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= 2 * MAXCONN_CAP + 200:
        return MAXCONN_CAP
    return max(256, min(MAXCONN_CAP, (hard - 200) * 2 // 3))


def raise_soft_nofile() -> None:
    """The soft file limit up to the hard one, so that HAProxy (a child)
    starts with every descriptor it may have even before its own setrlimit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


class HAProxyProcess:
    def __init__(self, layout: Layout, runtime: Runtime, binary: str = "haproxy") -> None:
        self.layout, self.runtime, self.binary = layout, runtime, binary

    def pid(self) -> int | None:
        """The master's pid if our HAProxy runs (a stale pid file is checked)."""
        try:
            pid = int(Path(self.layout.pid).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        # The master re-executes itself once started (and on each reload):
        # while it does, its command line reads empty for a moment.
        for _ in range(20):
            if not _alive(pid):
                return None
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return None
            if self.layout.conf_dir.encode() in cmdline:
                return pid
            if cmdline:
                return None  # another program: a stale pid file
            time.sleep(0.01)
        return None

    def reload(self) -> None:
        """Apply a changed `00-main.cfg`: the master re-executes and a new
        worker takes the listening sockets over; the old one finishes its
        requests. Only the router's own settings ever need this."""
        self.prepare()
        self.check_config()
        old = self.runtime.raw("show info").split("Pid: ")[1].split()[0]
        pid = self.pid()
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                info = self.runtime.raw("show info", timeout=2)
                if "Pid: " in info and info.split("Pid: ")[1].split()[0] != old:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RouterError("haproxy did not come back after a reload")
            time.sleep(0.02)

    def stop(self) -> None:
        """Soft-stop HAProxy (SIGUSR1: it stops accepting, in-flight requests
        finish), then end it (SIGTERM) once none is left. Its workers are
        marked `last` first: with no new worker to hand over to, an idle
        client's next request is served by them and the connection closed
        (haproxy_handover.render_handover_mark). A stopping worker keeps idle
        kept-alive clients for their next request (for reloads), which a
        stop must not wait for. Anything left after 10 s is killed."""
        pid = self.pid()
        if pid is None:
            self._remove_handover_dir()
            return
        self._mark_workers_last()
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        ended = False
        while _alive(pid) and time.monotonic() < deadline:
            if not ended and self.requests_in_flight() == 0:
                os.kill(pid, signal.SIGTERM)
                ended = True
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.stop_orphans()
        self._remove_handover_dir()

    def _workers(self, master: Runtime) -> list[str]:
        """Pids of every worker, old ones too (the master CLI's `show proc`)."""
        procs = master.raw("show proc; quit", timeout=2)
        return [f[0] for f in (line.split() for line in procs.splitlines())
                if len(f) > 1 and f[1] == "worker" and f[0].isdigit()]

    def _mark_workers_last(self) -> None:
        if not self.layout.handover_dir:
            return
        master = Runtime(self.layout.master_socket)
        # Not marked, a worker hands idle clients over to nothing: a 503
        # instead of an answer (a proxy adopted from an older configuration).
        try:
            for worker in self._workers(master):
                answer = master.raw(f"@!{worker} add map {self.layout.worker_flags_map} "
                                    "last 1; quit", timeout=2)
                if answer.strip():
                    log.warn("router: worker {w} not marked as the last: {a}",
                             w=worker, a=answer.strip())
        except OSError as e:
            log.warn("router: could not mark the proxy's workers as the last: {e}", e=e)

    def requests_in_flight(self) -> int | None:
        """Requests being served by any worker, old ones too (the master
        CLI's `@!<pid> show sess`): an idle connection has no stream, and
        the CLI's own streams (frontend GLOBAL: this query, the access-line
        reader) are no request. None: not known (the master did not
        answer in time, or answered something else)."""
        master = Runtime(self.layout.master_socket)
        try:
            count = 0
            for worker in self._workers(master):
                sess = master.raw(f"@!{worker} show sess; quit", timeout=2)
                if not sess.startswith("0x"):
                    return None  # not a stream list (the worker just exited, an error)
                count += sum(1 for line in sess.splitlines()
                             if line.startswith("0x") and " fe=" in line
                             and " fe=GLOBAL " not in line)
            return count
        except OSError:
            return None

    def _remove_handover_dir(self) -> None:
        if self.layout.handover_dir:
            shutil.rmtree(self.layout.handover_dir, ignore_errors=True)

    def _cmd(self) -> list[str]:
        return [shutil.which(self.binary) or self.binary, "-W", "-S",
                f"{self.layout.master_socket},mode,600", "-f", self.layout.conf_dir]

    def check_config(self) -> None:
        result = subprocess.run(self._cmd()[:1] + ["-c", "-q", "-f", self.layout.conf_dir],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RouterError(f"haproxy rejected the configuration: {result.stderr.strip()}")

    def prepare(self) -> None:
        """What the configuration needs before HAProxy reads it (launch and
        reload call it): the handover sockets' directory, the flags map."""
        if self.layout.handover_dir:
            ensure_handover_dir(self.layout.handover_dir, shared_with_workers=bool(self.layout.user))
            Path(self.layout.worker_flags_map).write_text("")  # read by new workers only

    def launch(self) -> None:
        raise_soft_nofile()
        self.prepare()  # outside the cleanup below: a directory it refused is not ours
        try:
            self.check_config()
            self.stop_orphans()
            self.check_ports_free()
            Path(self.layout.pid).unlink(missing_ok=True)
            # -D: the master daemonizes (its own session), outliving this process.
            result = subprocess.run(self._cmd() + ["-D"], capture_output=True, text=True,
                                    start_new_session=True, stdin=subprocess.DEVNULL)
            if result.returncode != 0:
                raise RouterError(f"haproxy did not start: {result.stderr.strip()}")
            deadline = time.monotonic() + START_TIMEOUT
            while self.pid() is None or not self.runtime.alive():
                if time.monotonic() > deadline:
                    raise RouterError("haproxy did not come up")
                time.sleep(0.02)
        except RouterError:
            if self.pid() is None:
                self._remove_handover_dir()  # prepare() made it; no proxy uses it
            raise
        log.info("router: haproxy started on {host}:{port}",
                 host=self.layout.listen_host, port=self.layout.listen_port)

    def check_ports_free(self, exclude: frozenset[int] = frozenset()) -> None:
        """HAProxy binds with SO_REUSEPORT: started on a port another
        HAProxy (a second server's router, the system's own) already
        listens on, it would start and the kernel would split the
        connections between the two, silently. A plain bind first says so.
        Only "in use" refuses: any other error (a privileged port that only
        HAProxy's capability opens, an address not here) is HAProxy's to
        report. `exclude`: ports the running proxy already holds (a reload)."""
        layout = self.layout
        for port in (layout.listen_port, layout.https_port):
            if not port or port in exclude:
                continue
            family = socket.AF_INET6 if ":" in layout.listen_host else socket.AF_INET
            with socket.socket(family) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
                try:
                    s.bind((layout.listen_host.strip("[]"), port))
                except OSError as e:
                    if e.errno != errno.EADDRINUSE:
                        continue
                    raise RouterError(
                        f"port {port} on {layout.listen_host} is already in use by another "
                        "program: the router needs it for itself (choose another with "
                        "--router-port / SHIPWAY_ROUTER_PORT, --https-port / "
                        "SHIPWAY_HTTPS_PORT)") from None

    def stop_orphans(self) -> None:
        """Workers of a killed master hold the port: stop every haproxy that
        was started on our configuration directory (no one else's)."""
        ours = self.layout.conf_dir.encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"haproxy") and ours in cmd:
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + 3
                while _alive(int(entry)) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if _alive(int(entry)):  # not "another program" on our port: ours, stuck
                    raise RouterError(f"an old haproxy of this router (pid {entry}) "
                                      "did not exit after SIGKILL")
