"""The pipeline against the real controller (SQLite) and a real bare repo.
The builders here are injected faults (a build that fails, stalls or
crashes), which is what these tests are about: rejection reasons, the push
lock, the build record and what the pusher sees."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from builder.interface import BuildRequest
from controller.errors import BuildFailed
from controller.store import open_controller
from hooks.interface import ZERO_SHA, Push, PushOptions, RefUpdate
from hooks.pipeline import Pipeline
from core.settings import load_settings


class FailingBuilder:
    """A build that fails, remembering what it was asked to build."""

    def __init__(self, gate: threading.Event | None = None, crash: bool = False) -> None:
        self.requests: list[BuildRequest] = []
        self.gate, self.crash = gate, crash
        self.entered = threading.Event()

    def build(self, request: BuildRequest, output: Any) -> Any:
        self.requests.append(request)
        output("-----> Detecting buildpack")
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        if self.crash:
            raise RuntimeError("the build host fell over")
        raise BuildFailed("no buildpack detected this app", reason="no buildpack detected")


@pytest.fixture
def world(tmp_path: Path) -> Any:
    settings, _ = load_settings({"data_dir": str(tmp_path / "data")}, environ={})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    controller = open_controller(settings)
    user, _key = controller.signup("owner@example.com", "correct horse battery")
    app = controller.create_app(user, "demo")
    repo = tmp_path / "demo.git"
    work = tmp_path / "work"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "README").write_text("hi\n")
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "one"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(repo), "main:feature"], check=True)
    commit = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()

    class World:
        pass

    w = World()
    w.settings, w.controller, w.user, w.app, w.repo, w.commit = (
        settings, controller, user, app, repo, commit)

    def pipeline(builder: Any) -> Pipeline:
        return Pipeline(settings, controller=controller, builder=builder, slugs=None)

    def push(*updates: RefUpdate, **opts: Any) -> Push:
        return Push(app=app, user=user, repo_path=repo, updates=updates,
                    options=PushOptions(**opts))

    w.pipeline, w.push = pipeline, push
    return w


def test_failed_build_rejects_with_its_reason_and_is_recorded(world: Any) -> None:
    world.controller.set_config(world.user, "demo", {"GREETING": "hello"})
    builder = FailingBuilder()
    lines: list[str] = []
    update = RefUpdate("refs/heads/main", ZERO_SHA, world.commit)
    outcome = world.pipeline(builder).receive(world.push(update, clean=True), lines.append)
    assert outcome == {"refs/heads/main": "no buildpack detected"}
    assert lines[0] == f"-----> Building demo (main {world.commit[:7]})"
    assert "-----> Detecting buildpack" in lines
    assert any("no buildpack detected this app" in ln for ln in lines)
    request = builder.requests[0]
    assert request.commit == world.commit and request.repo_path == world.repo
    assert request.clean_cache is True and request.env == {"GREETING": "hello"}
    builds = world.controller.list_builds(world.user, "demo")
    assert [b.status for b in builds] == ["failed"]
    assert "-----> Detecting buildpack" in builds[0].output


def test_other_branches_are_stored_not_built(world: Any) -> None:
    builder = FailingBuilder()
    lines: list[str] = []
    outcome = world.pipeline(builder).receive(
        world.push(RefUpdate("refs/heads/topic", ZERO_SHA, world.commit),
                   RefUpdate("refs/tags/v1", ZERO_SHA, world.commit)), lines.append)
    assert outcome == {"refs/heads/topic": None, "refs/tags/v1": "only branches can be pushed"}
    assert "branch topic stored, not deployed (only main/master deploy)" in lines
    assert builder.requests == []


def test_second_concurrent_push_is_rejected_at_once(world: Any) -> None:
    gate = threading.Event()
    builder = FailingBuilder(gate=gate)
    pipeline = world.pipeline(builder)
    update = RefUpdate("refs/heads/main", ZERO_SHA, world.commit)
    first: dict[str, Any] = {}
    t = threading.Thread(target=lambda: first.update(
        pipeline.receive(world.push(update), lambda _l: None)))
    t.start()
    try:
        assert builder.entered.wait(10)
        lines: list[str] = []
        started = time.monotonic()
        second = pipeline.receive(world.push(RefUpdate("refs/heads/master", ZERO_SHA,
                                                       world.commit)), lines.append)
        assert time.monotonic() - started < 2
        assert second == {"refs/heads/master": "another push to demo is in progress"}
        assert len(builder.requests) == 1
    finally:
        gate.set()
        t.join(10)
    assert first == {"refs/heads/main": "no buildpack detected"}
    # The lock was released: the next push builds again.
    pipeline.receive(world.push(update), lambda _l: None)
    assert len(builder.requests) == 2


def test_a_crashing_build_releases_the_lock(world: Any) -> None:
    builder = FailingBuilder(crash=True)
    pipeline = world.pipeline(builder)
    update = RefUpdate("refs/heads/main", ZERO_SHA, world.commit)
    lines: list[str] = []
    for _ in range(2):
        outcome = pipeline.receive(world.push(update), lines.append)
        assert outcome == {"refs/heads/main": "internal error"}
    assert len(builder.requests) == 2
    assert [b.status for b in world.controller.list_builds(world.user, "demo")] == ["failed"] * 2


def test_stale_ref_is_rejected_under_the_lock(world: Any) -> None:
    builder = FailingBuilder()
    outcome = world.pipeline(builder).receive(
        world.push(RefUpdate("refs/heads/feature", "1" * 40, world.commit),
                   RefUpdate("refs/heads/main", "2" * 40, world.commit)), lambda _l: None)
    assert outcome["refs/heads/main"] == "stale info (fetch first)"
    assert builder.requests == []


def test_deleting_the_deployed_branch_is_refused(world: Any) -> None:
    pipeline = world.pipeline(FailingBuilder())
    # History says main deployed v1 (recorded through the real controller).
    build = world.controller.start_build(world.app, world.user, "refs/heads/main", world.commit)
    world.controller.finish_build(build.id, "succeeded", "ok\n", 1)
    lines: list[str] = []
    outcome = pipeline.receive(world.push(
        RefUpdate("refs/heads/main", world.commit, ZERO_SHA),
        RefUpdate("refs/heads/master", world.commit, ZERO_SHA),
        RefUpdate("refs/heads/feature", world.commit, ZERO_SHA)), lines.append)
    assert outcome == {"refs/heads/main": "cannot delete the deployed branch",
                       "refs/heads/master": None, "refs/heads/feature": None}


