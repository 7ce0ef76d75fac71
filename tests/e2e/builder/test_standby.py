"""The standby build container: after a build, a fresh container is started
for the app's next build, which takes it; it serves that one build only, is
made like any build container (test_isolation proves one from inside), and
goes when it expires, when the cache is cleared, or with the builder."""
from __future__ import annotations

import time
from pathlib import Path

import docker

from tests.builder.helpers import make_app, slug_file


def _hostname_app(tmp_path: Path) -> tuple[Path, str]:
    """Docker names a container's host after the first 12 hex digits of its id."""
    return make_app(tmp_path, {".buildpacks": "./p\n", "p/bin/detect": "#!/bin/sh\necho P\n",
                               "p/bin/compile": "#!/bin/sh\nhostname > \"$1/ran-in\"\n"})


def _build_containers(instance: str) -> list:
    return docker.from_env().containers.list(all=True, filters={"label": [
        f"shipway.instance={instance}", "shipway.role=build"]})


def _ran_in(result) -> str:
    return slug_file(result.slug_path, "ran-in").strip()


def test_next_build_takes_the_standby_once(tmp_path: Path, make_builder, run_build) -> None:
    builder = make_builder()
    instance = builder.settings.instance
    repo, sha = _hostname_app(tmp_path)
    first, _ = run_build(repo, sha, using=builder)
    builder.wait_for_cleanup("app")
    [standby] = _build_containers(instance)
    assert standby.status == "running" and standby.labels["shipway.app"] == "app"
    assert _ran_in(first) != standby.id[:12]

    second, _ = run_build(repo, sha, using=builder)
    assert _ran_in(second) == standby.id[:12]
    builder.wait_for_cleanup("app")
    [after] = _build_containers(instance)  # the used one went, a new one waits
    assert after.id != standby.id

    # A clean build clears the volume the standby holds: it makes its own.
    third, out = run_build(repo, sha, using=builder, clean=True)
    assert "-----> Clearing the build cache" in out.lines
    assert _ran_in(third) != after.id[:12]
    builder.wait_for_cleanup("app")

    # A standby that died is not used; the build makes a container of its own.
    [dead] = _build_containers(instance)
    dead.kill()
    fourth, _ = run_build(repo, sha, using=builder)
    assert _ran_in(fourth) != dead.id[:12]

    builder.close()
    assert _build_containers(instance) == []


def test_standby_expires_and_can_be_turned_off(tmp_path: Path, make_builder, run_build) -> None:
    builder = make_builder(build_standby_ttl=2)
    repo, sha = _hostname_app(tmp_path)
    run_build(repo, sha, using=builder)
    builder.wait_for_cleanup()
    [expired] = _build_containers(builder.settings.instance)
    deadline = time.monotonic() + 20
    while _build_containers(builder.settings.instance) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _build_containers(builder.settings.instance) == []
    # An expired standby is not taken: this build makes its own container.
    again, _ = run_build(repo, sha, using=builder)
    assert _ran_in(again) and _ran_in(again) != expired.id[:12]

    off = make_builder(build_standby_ttl=0)
    run_build(repo, sha, using=off)
    off.wait_for_cleanup()
    assert _build_containers(off.settings.instance) == []


def test_no_standby_for_an_app_whose_cache_is_gone(make_builder) -> None:
    """A build's clean-up that ends after its app was destroyed starts no
    standby: mounting the removed volume would make Docker create an
    unlabelled one of that name."""
    builder = make_builder()
    gone = builder.build_volume_name("destroyed")
    builder._start_standby("destroyed", builder.settings.stack_image, gone)
    client = docker.from_env()
    assert _build_containers(builder.settings.instance) == []
    assert not client.volumes.list(filters={"name": gone})


def test_no_standby_is_kept_once_the_builder_is_closed(tmp_path: Path, make_builder,
                                                       run_build) -> None:
    """A clean-up thread that close() gave up waiting for may still make a
    standby: it is removed at once instead of outliving the server."""
    builder = make_builder()
    repo, sha = _hostname_app(tmp_path)
    run_build(repo, sha, using=builder)
    builder.close()
    builder._start_standby("app", builder.settings.stack_image, builder.build_volume_name("app"))
    assert _build_containers(builder.settings.instance) == []
