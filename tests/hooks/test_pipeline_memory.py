"""A whole push through the pipeline without Docker: the real controller
(SQLite), a real bare repo and local slug store, the real Deployer, and the
in-memory builder and runner (builder/memory.py, runner/memory.py). The
slug is a real tarball of the pushed tree; the runner's replicas and routes
are what the controller's deploy made of it."""
from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from builder.memory import MemoryBuilder
from controller.deploys import Deployer, DesiredState
from controller.store import open_controller
from core.settings import load_settings
from hooks.interface import ZERO_SHA, Push, PushOptions, RefUpdate
from hooks.pipeline import Pipeline
from runner.memory import MemoryRunner
from storage.local import LocalSlugStore

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}


@pytest.fixture
def world(tmp_path: Path) -> Any:
    settings, _ = load_settings({"data_dir": str(tmp_path / "data")}, environ={})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    controller = open_controller(settings)
    user, _key = controller.signup("owner@example.com", "correct horse battery")
    app = controller.create_app(user, "demo")
    slugs = LocalSlugStore(settings)
    runner = MemoryRunner(state=DesiredState(settings, controller), slugs=slugs)
    controller.set_deployer(Deployer(settings, controller=controller, runner=runner))
    runner.start()
    builder = MemoryBuilder(settings)
    pipeline = Pipeline(settings, controller=controller, builder=builder, slugs=slugs)
    repo, work = tmp_path / "demo.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)

    class World:
        pass

    w = World()
    w.settings, w.controller, w.user, w.app, w.slugs, w.runner, w.pipeline = (
        settings, controller, user, app, slugs, runner, pipeline)

    def commit(files: dict[str, str]) -> str:
        for name, text in files.items():
            (work / name).write_text(text)
        subprocess.run(["git", "-C", str(work), "add", "-A"], check=True, env=GIT_ENV)
        subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "c"], check=True,
                       env=GIT_ENV)
        subprocess.run(["git", "-C", str(work), "push", "-q", "-f", str(repo), "main:incoming"],
                       check=True, env=GIT_ENV)
        return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()

    def push(commit_sha: str, lines: list[str]) -> dict:
        update = RefUpdate("refs/heads/main", ZERO_SHA, commit_sha)
        return pipeline.receive(Push(app=app, user=user, repo_path=repo, updates=(update,),
                                     options=PushOptions()), lines.append)

    w.commit, w.push = commit, push
    return w


def test_a_push_becomes_a_slug_a_release_and_routed_replicas(world: Any) -> None:
    sha = world.commit({"Procfile": "web: python3 serve.py\nworker: python3 work.py\n",
                        "serve.py": "print('hi')\n"})
    lines: list[str] = []
    assert world.push(sha, lines) == {"refs/heads/main": None}
    assert any("Released v1" in ln for ln in lines)
    release = world.controller.current_release(world.app)
    assert release.version == 1 and release.status == "succeeded"
    assert release.process_types == {"web": "python3 serve.py", "worker": "python3 work.py"}
    slug = world.controller.get_slug(release.slug_id)
    with tarfile.open(fileobj=io.BytesIO(world.slugs.path(slug.storage_key).read_bytes())) as t:
        assert t.extractfile("serve.py").read() == b"print('hi')\n"
        assert "Procfile" in t.getnames()
    replicas = world.runner.replicas("demo")
    assert [(r.process_type, r.version) for r in replicas] == [("web", 1)]  # default formation
    assert world.runner.serving_version("demo") == 1
    route = world.runner.routes["demo"]
    assert route.hostnames[0] == world.settings.app_hostname("demo")
    assert route.upstreams == [("127.0.0.1", replicas[0].host_port)]


def test_a_failed_deploy_rejects_the_push_and_the_previous_release_serves(world: Any) -> None:
    assert world.push(world.commit({"Procfile": "web: a\n"}), []) == {"refs/heads/main": None}
    before = world.runner.routes["demo"]
    world.runner.fail_next("demo", "boom: no database")
    lines: list[str] = []
    outcome = world.push(world.commit({"Procfile": "web: b\n"}), lines)
    assert outcome["refs/heads/main"] is not None
    assert any("boom: no database" in ln for ln in lines)
    statuses = [r.status for r in world.controller.list_releases(world.user, "demo")]
    assert statuses == ["failed", "succeeded"]
    assert world.runner.routes["demo"] == before and world.runner.serving_version("demo") == 1


def test_a_tree_without_a_procfile_is_rejected_by_the_build(world: Any) -> None:
    lines: list[str] = []
    assert world.push(world.commit({"README": "hi\n"}), lines) == \
        {"refs/heads/main": "no buildpack detected"}
    assert world.controller.current_release(world.app) is None
    assert world.runner.replicas("demo") == []


def test_the_same_commit_builds_the_same_slug(world: Any, tmp_path: Path) -> None:
    from builder.interface import BuildRequest

    sha = world.commit({"Procfile": "web: x\n"})
    builder = MemoryBuilder(world.settings)
    request = BuildRequest(app="demo", repo_path=tmp_path / "demo.git", commit=sha, env={})
    a, b = builder.build(request, lambda _l: None), builder.build(request, lambda _l: None)
    try:
        assert a.sha256 == b.sha256 and a.size == b.size and a.unpacked_size
    finally:
        a.slug_path.unlink()
        b.slug_path.unlink()
