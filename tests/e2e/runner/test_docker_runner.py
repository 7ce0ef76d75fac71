"""The Docker runner with real containers of the stack image, behind the real
nginx: deploy, failed deploys, scale, supervision, adoption, isolation."""
from __future__ import annotations

import re

import docker
import docker.errors
import pytest
import requests

from controller.errors import DeployFailed
from runner.run_disk import run_storage
from tests.conftest import unique
from tests.e2e.runner.conftest import WEB, Rig, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _serving(rig: Rig, app) -> list:
    return [r for r in rig.runner.replicas(app.name) if r.state == "running"]


def _version(rig: Rig, app) -> str:
    r = rig.get(app)
    return r.text.split()[0] if r.status_code == 200 else str(r.status_code)


def test_deploy_serves_through_nginx_then_rejects_broken_releases(rig: Rig) -> None:
    app = rig.controller.create_app(rig.user)
    assert rig.get(app).status_code == 404  # no route before the first deploy
    lines: list[str] = []
    v1 = rig.deploy(app, rig.release(app), lines)
    assert v1.status == "succeeded"
    assert _version(rig, app) == "v1"
    assert any("healthy on port" in line for line in lines)

    # A release whose web process exits at boot: rejected with its last log
    # lines, v1 keeps serving, no container of it is left.
    crash = rig.release(app, {"web": "echo 'config missing: DATABASE_URL' >&2; exit 3"})
    with pytest.raises(DeployFailed) as info:
        rig.deploy(app, crash)
    assert "exited" in info.value.message
    assert any("config missing: DATABASE_URL" in line for line in info.value.log_tail)
    assert rig.controller.get_release(app, crash.version).status == "failed"
    assert _version(rig, app) == "v1"

    # A release that never binds $PORT: rejected after the app's own timeout.
    rig.controller.set_config(rig.user, app.name, {"HEALTHCHECK_TIMEOUT": "4"})
    assert _version(rig, app) == "v3"  # the config change itself deployed v3
    mute = rig.release(app, {"web": "echo never listening; sleep 600"})
    with pytest.raises(DeployFailed) as info:
        rig.deploy(app, mute)
    assert "did not answer HTTP" in info.value.message
    assert "never listening" in "\n".join(info.value.log_tail)
    assert _version(rig, app) == "v3"
    versions = {r.version for r in rig.runner.replicas(app.name) if r.state == "running"}
    assert versions == {3}


def test_config_is_in_the_environment_and_replica_is_locked_down(rig: Rig) -> None:
    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    rig.controller.set_config(rig.user, app.name, {"GREETING": "it's a \"quoted\" $value"})
    assert rig.get(app).text.split(" ", 1)[1].startswith("it's a \"quoted\" $value")

    [replica] = _serving(rig, app)
    client = docker.from_env()
    c = client.containers.get(replica.container_id)
    host = c.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges" in host["SecurityOpt"]
    assert not host["Privileged"] and host["Memory"] > 0 and host["NanoCpus"] > 0
    assert c.attrs["Config"]["User"].startswith("1000")
    # Nothing of the host: only the container's own root-owned /shipway-in
    # volume (entrypoint and env); a read-only root, fixed-size tmpfs for
    # every writable path (issue 14).
    [mount] = c.attrs["Mounts"]
    assert (mount["Type"], mount["Destination"]) == ("volume", "/shipway-in")
    assert re.fullmatch(r"[0-9a-f]{64}", mount["Name"]) and not host.get("Binds")
    assert host["ReadonlyRootfs"] and set(host["Tmpfs"]) == {"/workspace", "/tmp", "/shipway"}
    code, out = c.exec_run(["bash", "-c", "touch /shipway-in/x; touch /etc/x; touch /x"],
                           user="1000:1000")
    assert code != 0 and out.decode().count("Permission denied") + \
        out.decode().count("Read-only file system") == 3
    for bindings in c.attrs["NetworkSettings"]["Ports"].values():
        assert all(b["HostIp"] == "127.0.0.1" for b in bindings or [])
    labels = c.labels
    assert labels["shipway.app"] == app.name and labels["shipway.role"] == "run"
    assert labels["shipway.release"] == str(replica.version) and labels["shipway.process"] == "web"
    # Inside: no capabilities at all, no Docker socket, not root, and the
    # platform's variables are set.
    code, out = c.exec_run(["bash", "-c", "grep CapEff /proc/1/status; id -u; "
                            "ls /var/run/docker.sock /run/docker.sock 2>&1; "
                            "tr '\\0' '\\n' </proc/$(pgrep -f app.py | head -1)/environ"])
    text = out.decode()
    assert "CapEff:\t0000000000000000" in text
    assert "\n1000\n" in text
    assert text.count("No such file or directory") == 2
    for name in ("PORT=5000", f"APP_NAME={app.name}", "APP_VERSION=v2", "RELEASE_COOKIE=",
                 "SECRET_KEY_BASE=", "RELEASE_NODE=", "MY_NODE_NAME="):
        assert name in text
    assert "SHIPWAY_SLUG_URL" not in text  # the signed URL is not left to the app
    client.close()


def test_the_slug_is_unpacked_into_memory_of_a_fixed_size(rig: Rig) -> None:
    """/workspace (where /app points) is a tmpfs of the run disk's share; the
    memory limit grows by the whole run disk (issue 14)."""
    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app, sized=True))
    assert _version(rig, app) == "v1"
    [replica] = _serving(rig, app)
    client = docker.from_env()
    c = client.containers.get(replica.container_id)
    host = c.attrs["HostConfig"]
    storage = run_storage(rig.settings)
    assert host["Tmpfs"]["/workspace"].startswith(f"size={storage.workspace},")
    assert host["Tmpfs"]["/tmp"].startswith(f"size={storage.tmp},")
    assert host["Memory"] == docker.utils.parse_bytes(rig.settings.run_memory) + storage.total
    code, out = c.exec_run(["bash", "-c", "grep ' /workspace ' /proc/mounts; ls /app"],
                           user="1000:1000")
    assert code == 0
    mount, listing = out.decode().split("\n", 1)
    assert mount.split()[2] == "tmpfs" and "uid=1000" in mount
    assert "app.py" in listing.split()
    client.close()


def test_ssh_keys_of_the_apps_users_reach_the_replica(rig: Rig) -> None:
    import subprocess

    app = rig.controller.create_app(rig.user)
    key = rig.base / unique("key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = (key.with_suffix(".pub") if key.suffix else key.parent / (key.name + ".pub")).read_text()
    rig.controller.add_ssh_key(rig.user, public)
    rig.deploy(app, rig.release(app))
    [replica] = _serving(rig, app)
    c = docker.from_env().containers.get(replica.container_id)
    # sshd starts beside the app (not before it), so give it a moment.
    wait_for(lambda: public.split()[1] in
             c.exec_run(["cat", "/shipway/ssh/authorized_keys"]).output.decode(), timeout=20)
    wait_for(lambda: c.exec_run(["pgrep", "-u", "1000", "-f", "sshd -f /shipway"]).exit_code == 0,
             timeout=20)
    # A real SSH login with the user's key runs in the replica's environment.
    c.reload()
    ssh_port = c.attrs["NetworkSettings"]["Ports"]["2222/tcp"][0]["HostPort"]
    result = subprocess.run(
        ["ssh", "-i", str(key), "-p", ssh_port, "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
         "app@127.0.0.1", "echo $APP_NAME $APP_VERSION; pwd"],
        capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == [app.name, "v1", "/app"], result.stderr


def test_scale_up_and_down_keeps_existing_replicas(rig: Rig) -> None:
    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    [first] = _serving(rig, app)
    rig.controller.scale(rig.user, app.name, {"web": 3})
    running = [r for r in rig.runner.replicas(app.name) if r.state == "running"]
    assert len(running) == 3 and first.container_id in {r.container_id for r in running}
    hosts = {rig.get(app).text.split()[2] for _ in range(12)}
    assert len(hosts) == 3  # round robin over all three

    rig.controller.scale(rig.user, app.name, {"web": 1})
    wait_for(lambda: len(rig.runner.replicas(app.name)) == 1, timeout=30)
    assert len({rig.get(app).text.split()[2] for _ in range(6)}) == 1
    assert rig.controller.current_release(app).version == 1  # no new release


def test_worker_process_runs_without_port_or_route(rig: Rig) -> None:
    app = rig.controller.create_app(rig.user)
    release = rig.release(app, {**WEB, "worker": "while true; do echo working; sleep 1; done"})
    rig.deploy(app, release)
    rig.controller.scale(rig.user, app.name, {"worker": 2})
    replicas = rig.runner.replicas(app.name)
    workers = [r for r in replicas if r.process_type == "worker"]
    assert len(workers) == 2 and all(r.host_port is None for r in workers)
    assert [r.process_type for r in replicas].count("web") == 1
    assert rig.router.routes()[app.name].upstreams == [
        ("127.0.0.1", next(r.host_port for r in replicas if r.process_type == "web"))]


def test_dead_replica_is_replaced(rig: Rig) -> None:
    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    [replica] = _serving(rig, app)
    docker.from_env().containers.get(replica.container_id).kill(signal="SIGKILL")

    def replaced():
        now = [r for r in rig.runner.replicas(app.name) if r.state == "running"]
        # The router's routes are read under its lock, so once they name the
        # new replica its reload is over (before that, nginx's old and new
        # workers both accept for a moment, and answers alternate).
        route = rig.router.routes().get(app.name)
        return (len(now) == 1 and now[0].container_id != replica.container_id
                and route is not None
                and [p for _, p in route.upstreams] == [now[0].host_port]
                and rig.get(app).status_code == 200)

    wait_for(replaced, timeout=60)
    assert _version(rig, app) == "v1"


def test_restart_adopts_containers_and_removes_orphans(rig: Rig) -> None:
    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    before = {r.container_id for r in rig.runner.replicas(app.name)}

    # The server stops (its containers keep running) and, meanwhile, a run
    # container of an app that no longer exists is left on the engine.
    rig.runner.stop()
    client = docker.from_env()
    ghost = unique("ghost")
    orphan = client.containers.run(
        rig.settings.stack_image, ["sleep", "300"], detach=True,
        labels={"shipway.instance": rig.instance, "shipway.role": "run",
                "shipway.app": ghost, "shipway.release": "1", "shipway.process": "web"})
    rig.runner = rig.new_runner()
    rig.runner.start()
    assert {r.container_id for r in rig.runner.replicas(app.name)} == before
    assert _version(rig, app) == "v1"
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(orphan.id)
    # Still managed: a scale works on the adopted release.
    rig.controller.scale(rig.user, app.name, {"web": 2})
    assert len(rig.runner.replicas(app.name)) == 2
    assert before < {r.container_id for r in rig.runner.replicas(app.name)}


def test_restart_adopts_neither_a_replica_being_stopped_nor_one_running_other_code(
        rig: Rig) -> None:
    """A server killed while it stopped a replica, or while it hot-upgraded
    replicas to a release that then failed, leaves replicas labelled with
    the current release that must not serve it: the restarted server
    replaces them instead."""
    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    rig.controller.scale(rig.user, app.name, {"web": 3})
    stopping, upgraded, good = sorted(rig.runner.docker.list(app.name), key=lambda r: r.created)
    rig.runner.stop()
    # As the killed server left them: one renamed to be stopped (its stop
    # never came), one that took v2's code in place (v2 then failed).
    rig.runner.docker.mark_stopping(stopping)
    code, _ = docker.from_env().containers.get(upgraded.id).exec_run(
        ["sh", "-c", "echo 2 > /shipway/hot-version"], user="1000:1000")
    assert code == 0
    rig.runner = rig.new_runner()
    rig.runner.start()
    assert set(rig.runner._live[app.name]) == {good.id}

    def replaced() -> bool:
        running = {r.container_id for r in _serving(rig, app)}
        return (len(running) == 3 and good.id[:12] in running
                and not {stopping.id[:12], upgraded.id[:12]} & running)

    wait_for(replaced, timeout=60)
    assert all(rig.get(app).text.startswith("v1") for _ in range(6))


def test_destroy_removes_containers_and_route(rig: Rig) -> None:
    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    client = docker.from_env()
    volumes = [m["Name"] for r in rig.runner.replicas(app.name)
               for m in client.containers.get(r.container_id).attrs["Mounts"]]
    assert volumes
    rig.controller.destroy_app(rig.user, app.name)
    assert rig.runner.replicas(app.name) == []
    assert rig.get(app).status_code == 404
    for name in volumes:  # each replica's /app volume goes with it
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get(name)


def test_custom_domain_is_routed_and_unrouted(rig: Rig) -> None:
    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    domain = f"{unique('www')}.example.org"
    rig.controller.add_domain(rig.user, app.name, domain)
    url = f"http://127.0.0.1:{rig.settings.router_port}/"
    assert requests.get(url, headers={"Host": domain}, timeout=10).text.startswith("v1")
    rig.controller.remove_domain(rig.user, app.name, domain)
    assert requests.get(url, headers={"Host": domain}, timeout=10).status_code == 404


def test_router_refusal_fails_the_deploy_and_keeps_the_old_release(rig: Rig, monkeypatch) -> None:
    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    import router.nginx as mod

    # Injected fault: nginx -t rejects the next configuration.
    monkeypatch.setattr(mod, "render", lambda *a, **k: "not nginx config;")
    v2 = rig.release(app)
    with pytest.raises(DeployFailed, match="could not be routed"):
        rig.deploy(app, v2)
    monkeypatch.undo()
    assert _version(rig, app) == "v1"
    assert {r.version for r in rig.runner.replicas(app.name)} == {1}
    rig.controller.scale(rig.user, app.name, {"web": 2})  # still manages v1
    assert {r.version for r in _serving(rig, app)} == {1} and len(_serving(rig, app)) == 2


def test_a_route_change_nginx_did_not_confirm_is_undone(rig: Rig, monkeypatch) -> None:
    """nginx took v2's route but did not confirm it in time (it hung): the
    deploy fails, v2's replicas go, and v1's route comes back once nginx
    answers again, instead of a route to removed replicas."""
    import os
    import signal

    import router.nginx as mod

    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    v2 = rig.release(app)
    monkeypatch.setattr(mod, "APPLY_TIMEOUT", 1.0)
    pid = rig.router.pid()
    os.kill(pid, signal.SIGSTOP)  # injected: nginx hangs through the switch
    try:
        with pytest.raises(DeployFailed, match="could not be routed"):
            rig.deploy(app, v2)
        # routing back failed too (nginx still hangs): supervision retries it
        assert app.name in rig.runner._unrouted
    finally:
        os.kill(pid, signal.SIGCONT)
    monkeypatch.undo()
    wait_for(lambda: app.name not in rig.runner._unrouted, timeout=30)
    wait_for(lambda: rig.get(app).status_code == 200, timeout=30)
    assert all(rig.get(app).text.startswith("v1") for _ in range(4))
    assert {r.version for r in rig.runner.replicas(app.name)} == {1}


def test_supervision_starts_a_killed_nginx_again(rig: Rig) -> None:
    import os
    import signal

    from router.nginx import _children

    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    pid = rig.router.pid()
    for process in [pid, *_children(pid)]:
        os.kill(process, signal.SIGKILL)
    wait_for(lambda: rig.router.pid() not in (None, pid) and rig.get(app).status_code == 200,
             timeout=30)
    assert rig.get(app).text.startswith("v1")


def test_an_app_that_cannot_be_adopted_does_not_stop_the_others(rig: Rig, monkeypatch) -> None:
    first, second = (rig.controller.create_app(rig.user) for _ in range(2))
    for app in (first, second):
        rig.deploy(app, rig.release(app))
    kept = {app.name: {r.container_id for r in rig.runner.replicas(app.name)}
            for app in (first, second)}
    rig.runner.stop()
    real = rig.controller.current_release
    failing = {first.name}

    def flaky(app):  # injected: the database fails for one app, once
        if app.name in failing:
            failing.discard(app.name)
            raise RuntimeError("injected: database unavailable")
        return real(app)

    monkeypatch.setattr(rig.controller, "current_release", flaky)
    rig.runner = rig.new_runner()
    rig.runner.start()  # does not raise
    assert {r.container_id for r in rig.runner.replicas(second.name)} == kept[second.name]
    assert second.name in rig.runner._desired
    # the supervision pass adopts the first one, keeping its replica
    wait_for(lambda: first.name in rig.runner._desired, timeout=20)
    assert set(rig.runner._live[first.name]) == {
        r.id for r in rig.runner.docker.list(first.name)}
    assert {r.container_id for r in rig.runner.replicas(first.name)} == kept[first.name]
    assert rig.get(first).text.startswith("v1")


def test_a_hot_upgrade_that_fails_halfway_leaves_one_release_running(rig: Rig,
                                                                      monkeypatch) -> None:
    """One replica took the new code in place, the next failed, and the
    restart that should have replaced both failed too: the replicas are
    replaced by ones of the release that stays, so that no replica runs
    code of a release that failed."""
    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    rig.controller.scale(rig.user, app.name, {"web": 2})
    before = {r.container_id for r in rig.runner.replicas(app.name)}
    said = iter([(0, ["upgraded"])])

    def run_script(container_id, script, args, stdin=None):  # injected: the second one fails
        return next(said)  # StopIteration on the second: "could not be reached"

    real_start = rig.runner._start_healthy
    starts = []

    def start_healthy(spec, counts, output):  # injected: v2's restart fails too
        starts.append(spec.version)
        if spec.version == 2:
            raise DeployFailed("injected: v2 did not become healthy")
        return real_start(spec, counts, output)

    monkeypatch.setattr(rig.runner.docker, "run_script", run_script)
    monkeypatch.setattr(rig.runner, "_start_healthy", start_healthy)
    with pytest.raises(DeployFailed, match="injected"):
        rig.controller.deploy_release(app, rig.release(app), hot=True)
    assert starts == [2, 1]
    now = [r for r in rig.runner.replicas(app.name) if r.state == "running"]
    assert len(now) == 2 and not before & {r.container_id for r in now}
    assert {r.version for r in now} == {1} and rig.get(app).text.startswith("v1")


def test_replacements_failing_for_any_reason_back_off(rig: Rig, monkeypatch) -> None:
    import time

    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    [replica] = _serving(rig, app)
    attempts = []

    def start_healthy(spec, counts, output):  # injected: the slug store is down
        attempts.append(time.monotonic())
        raise OSError("injected: slug store unreachable")

    monkeypatch.setattr(rig.runner, "_start_healthy", start_healthy)
    docker.from_env().containers.get(replica.container_id).kill(signal="SIGKILL")
    wait_for(lambda: rig.runner._failures.get(app.name, (0, 0))[0] >= 3, timeout=40)
    assert attempts[2] - attempts[1] >= 4.0  # 2 s, then 4 s, ...
    monkeypatch.undo()
    wait_for(lambda: len(_serving(rig, app)) == 1 and rig.get(app).status_code == 200,
             timeout=60)


ERRS_FIRST_PY = b'''import http.server, os
count = [0]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        count[0] += 1
        body = b"%d" % count[0]
        self.send_response(500 if count[0] <= int(os.environ["FAILS"]) else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
'''


def test_health_check_attempts_are_the_apps_to_set(rig: Rig) -> None:
    """HEALTHCHECK_ATTEMPTS=3: a replica that answers 500 twice and then
    200 is healthy; one that keeps answering 500 fails at its third error
    answer, not at the timeout, and says so."""
    app = rig.controller.create_app(rig.user)
    rig.controller.set_config(rig.user, app.name, {"HEALTHCHECK_ATTEMPTS": "3", "FAILS": "2"})
    rig.deploy(app, rig.release(app, files={"app.py": ERRS_FIRST_PY}))
    assert rig.get(app).text == "4"  # the health check had answers 1 to 3
    with pytest.raises(DeployFailed, match=r"answered 500 at / 3 time\(s\)"):
        rig.controller.set_config(rig.user, app.name, {"FAILS": "1000"})
    assert rig.get(app).text == "5"  # v1 keeps serving


def test_replicas_of_a_resize_cut_off_by_a_crash_are_replaced_without_downtime(
        rig: Rig) -> None:
    """The size was stored, then the server died before it replaced the
    replicas: its next start keeps the old-size replica serving until one
    of the stored size is healthy."""
    import sqlalchemy as sa

    from controller.db import apps

    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    [old] = rig.runner.docker.list(app.name)
    assert old.size_label == "" and old.sized(None)
    rig.runner.stop()
    with rig.controller.db.write() as conn:  # as resize() commits it before deploying
        conn.execute(apps.update().where(apps.c.id == app.id).values(replica_size=0.25))
    rig.runner = rig.new_runner()
    rig.runner.start()
    assert old.id in rig.runner._live[app.name]  # serving meanwhile

    answers = []

    def resized() -> bool:
        answers.append(rig.get(app).status_code)  # served all along
        running = [r for r in rig.runner.docker.list(app.name)
                   if r.state == "running" and not r.stopping]
        return len(running) == 1 and running[0].size_label == "0.25"

    wait_for(resized, timeout=60, interval=0.1)
    assert len(answers) > 5 and set(answers) == {200}
    [new] = [r for r in rig.runner.docker.list(app.name) if not r.stopping]
    host = docker.from_env().containers.get(new.id).attrs["HostConfig"]
    assert host["NanoCpus"] == 250_000_000
    assert rig.get(app).text.startswith("v1")


def test_a_supervision_pass_never_waits_for_an_apps_lock(rig: Rig) -> None:
    """An app still to adopt whose lock a long deploy holds is left for a
    later pass: the pass goes on (nginx, other apps' replicas)."""
    import threading

    app = rig.controller.create_app(rig.user)
    rig.deploy(app, rig.release(app))
    from runner.supervision import ADOPT_EVERYTHING

    rig.runner._desired.pop(app.name)
    rig.runner._unadopted.update({app.name, ADOPT_EVERYTHING})  # the first sweep failed too
    held, release = threading.Event(), threading.Event()

    def deploy_in_progress() -> None:
        with rig.runner._lock(app.name):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=deploy_in_progress)
    holder.start()
    try:
        assert held.wait(10)
        passing = threading.Thread(target=rig.runner._supervise_once)
        passing.start()
        passing.join(5)
        assert not passing.is_alive(), "the pass waited for the app's lock"
        assert app.name in rig.runner._unadopted
    finally:
        release.set()
        holder.join(10)
    rig.runner._supervise_once()  # the lock is free: adopted now
    assert app.name not in rig.runner._unadopted and app.name in rig.runner._desired
