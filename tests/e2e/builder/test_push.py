"""Builds driven by a real `git push` to a real `shipway server`: each
example builds (and goes live), and a failing compile rejects the push with
the buildpack's own output while the branch stays where it was."""
from __future__ import annotations

import pytest

from tests.e2e.helpers import User, fetch

pytestmark = [pytest.mark.slow]

DETECTED = {"elixir": "Elixir", "python": "Python", "nodejs": "Node.js", "procfile": "Procfile"}
ANSWER = {"elixir": "Hello from Elixir v1", "python": "Hello from Python",
          "nodejs": "Hello from Node.js", "procfile": "Hello from a Procfile"}


def _user(make_server, tmp_path, stack_image: str) -> tuple[User, str, object]:
    server = make_server(env={"SHIPWAY_STACK_IMAGE": stack_image, "SHIPWAY_STOP_GRACE": "2"})
    user = User(server, tmp_path / "home")
    user.shipway("signup", "--email", "d@example.com", "--password", "correct horse battery")
    app = "b-" + server.instance[-8:]
    user.shipway("create", app)
    return user, app, server


@pytest.mark.parametrize("example", sorted(DETECTED))
def test_example_builds_from_git_push(example: str, make_server, tmp_path, stack_image) -> None:
    user, app, server = _user(make_server, tmp_path, stack_image)
    user.shipway("-a", app, "config:set", "GREETING=bonjour")
    user.checkout_example(example, app)
    push = user.push()
    assert f"-----> {DETECTED[example]} app detected" in push.stderr
    assert "-----> Slug" in push.stderr
    r = fetch(server, app, timeout=30)
    assert r.status_code == 200
    assert r.text.startswith(ANSWER[example]) and "bonjour" in r.text


def test_failing_compile_rejects_push_with_its_output(make_server, tmp_path, stack_image) -> None:
    user, app, _ = _user(make_server, tmp_path, stack_image)
    user.checkout_example("procfile", app)
    (user.src / ".buildpacks").write_text("./pack\nprocfile\n")
    (user.src / "pack" / "bin").mkdir(parents=True)
    for name, body in (("detect", "echo Pack"),
                       ("compile", "echo 'checking things'; echo 'fatal: widget-7731 missing' >&2; exit 2")):
        script = user.src / "pack" / "bin" / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    user.commit("a failing buildpack")
    push = user.push(check=False)
    assert push.returncode != 0
    assert "fatal: widget-7731 missing" in push.stderr and "checking things" in push.stderr
    assert user.remote_head() == ""


def test_server_killed_mid_build_leaves_nothing_after_restart(make_server, tmp_path,
                                                              stack_image) -> None:
    import subprocess
    import time

    import docker

    user, app, server = _user(make_server, tmp_path, stack_image)
    user.checkout_example("procfile", app)
    (user.src / ".buildpacks").write_text("./slow\n")
    (user.src / "slow" / "bin").mkdir(parents=True)
    for name, body in (("detect", "echo Slow"), ("compile", "echo slow-compile-started; sleep 600")):
        script = user.src / "slow" / "bin" / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    user.commit("a build that never ends")
    push = subprocess.Popen(["git", "push", "shipway", "main"], cwd=str(user.src), env=user.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = docker.from_env()
    labels = [f"shipway.instance={server.instance}", "shipway.role=build"]
    temp = server.data_dir / "tmp" / "builds"
    try:
        deadline = time.time() + 120
        # The low-level list: one call, no per-container inspect that a
        # container removed meanwhile would turn into NotFound.
        while not client.api.containers(filters={"label": labels}):
            assert time.time() < deadline, "the build container never started"
            time.sleep(0.5)
        server.kill9()
    finally:
        push.kill()
        push.wait()
    assert client.api.containers(all=True, filters={"label": labels})  # left behind
    assert any(temp.iterdir())
    server.start()  # same data dir and instance: the new server cleans up at start
    deadline = time.time() + 60
    while client.api.containers(all=True, filters={"label": labels}) or any(temp.iterdir()):
        assert time.time() < deadline, "leftovers were not removed"
        time.sleep(0.5)
