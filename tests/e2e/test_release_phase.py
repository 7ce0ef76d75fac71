"""The release phase (issue 18 item 1) end to end: a real `git push` of a
Procfile with a `release:` line, real Docker. The command runs in a one-off
of the new release before any of its replicas starts, its output reaches
the pusher; a failing one rejects the push and the last good release keeps
serving; one that never ends is stopped at its timeout and says so."""
from __future__ import annotations

import datetime as dt
import re
import time

import docker
import pytest

from tests.e2e.helpers import fetch, new_app

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _procfile(user, release: str) -> None:
    (user.src / "Procfile").write_text(f"web: python3 serve.py\nrelease: {release}\n")
    user.commit(f"release: {release}")


def _oneoffs(server, app: str) -> list:
    client = docker.from_env()
    try:
        return client.containers.list(all=True, filters={"label": [
            f"shipway.instance={server.instance}", f"shipway.app={app}", "shipway.role=oneoff"]})
    finally:
        client.close()


def _started_ns(container_id: str) -> int:
    client = docker.from_env()
    try:
        started = client.containers.get(container_id).attrs["State"]["StartedAt"]
    finally:
        client.close()
    whole, _, frac = started.rstrip("Z").partition(".")
    seconds = dt.datetime.fromisoformat(whole).replace(tzinfo=dt.timezone.utc).timestamp()
    return int(seconds) * 10**9 + int((frac + "000000000")[:9])


def test_release_phase_runs_first_and_a_failure_or_timeout_rejects_the_push(
        make_server, tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "owner", "procfile", "relph",
                        env={"MARK": "from-config"})
    _procfile(user, 'echo "release-phase $APP_VERSION $MARK at $(date +%s%N)"')
    pushed = user.push()
    said = pushed.stderr
    line = next(x for x in said.splitlines() if "release-phase v1 from-config at" in x)
    ran_at = int(re.search(r" at (\d+)", line).group(1))
    assert "Release command succeeded" in said, said
    [replica] = user.shipway_json("-a", app, "ps")["replicas"]
    assert replica["process_type"] == "web" and replica["version"] == 1
    # The release command ran (and ended) before the replica started.
    assert ran_at < _started_ns(replica["container_id"])
    assert "release 1" in fetch(server, app).text or "v1" in fetch(server, app).text
    assert _oneoffs(server, app) == []  # removed afterwards

    # A failing release command: the push is rejected, the branch does not
    # move, v1 keeps serving.
    good_head = user.remote_head()
    _procfile(user, "echo migration-broke; exit 4")
    failed = user.push(check=False)
    assert failed.returncode != 0
    assert "migration-broke" in failed.stderr and "exit status 4" in failed.stderr, failed.stderr
    assert user.remote_head() == good_head
    assert [r["version"] for r in user.shipway_json("-a", app, "ps")["replicas"]] == [1]
    assert fetch(server, app).status_code == 200

    # One that never ends is stopped at its timeout (the app's own) and says so.
    user.shipway("-a", app, "config:set", "RELEASE_PHASE_TIMEOUT=4")
    _procfile(user, "echo hanging; sleep 600")
    started = time.monotonic()
    hung = user.push(check=False)
    assert hung.returncode != 0
    assert time.monotonic() - started < 120
    assert "timed out after 4 s" in hung.stderr, hung.stderr
    assert user.remote_head() == good_head
    serving = {r["version"] for r in user.shipway_json("-a", app, "ps")["replicas"]}
    assert len(serving) == 1 and fetch(server, app).status_code == 200
    assert _oneoffs(server, app) == []
