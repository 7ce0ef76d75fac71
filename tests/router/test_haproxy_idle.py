"""An idle HAProxy router with nobody reading its access lines stays idle.

Its access lines go into an in-memory ring that the logger pulls over the
admin socket (logger/router_lines.py). A ring with a `server` line instead
pushed to the logger's socket, and HAProxy 2.6's forwarder retried in a
tight loop while nothing listened (the `shipway server` stopped, the logger
restarting, this test): thousands of failed connects and up to half a core
a second in an otherwise idle worker.
"""
from __future__ import annotations

import os
import time

import pytest

from router.haproxy import HAProxyRouter
from tests.router.test_haproxy import router, settings  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="haproxy not installed")


def workers(master: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                found.append(int(entry))
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/PID/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_worker_stays_idle_with_no_log_reader(router: HAProxyRouter) -> None:  # noqa: F811
    master = router.pid()
    assert master is not None
    (worker,) = workers(master)
    time.sleep(0.5)  # past start-up
    before = cpu_seconds(worker)
    time.sleep(2)
    assert cpu_seconds(worker) - before < 0.1
