"""Failing compile, timeout, over-size slug, and clean-up after a build
process is killed with SIGKILL mid-build."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import docker
import pytest

from builder.docker_builder import DockerBuilder
from controller.errors import BuildFailed
from tests.builder.helpers import make_app, slug_file
from tests.conftest import ROOT


def _app_with_compile(tmp_path: Path, compile_body: str, name: str = "app") -> tuple[Path, str]:
    return make_app(tmp_path, {".buildpacks": "./pack\n", "pack/bin/detect": "#!/bin/sh\necho Pack\n",
                               "pack/bin/compile": "#!/bin/bash\n" + compile_body}, name=name)


def _assert_build_container_removed(builder: DockerBuilder) -> None:
    """The build's container goes in the background; `close` waits for that
    and removes only the standby started for the next build."""
    builder.close()
    assert _containers(builder.settings.instance) == []


def _containers(instance: str) -> list:
    return docker.from_env().containers.list(all=True,
                                             filters={"label": f"shipway.instance={instance}"})


def test_failing_compile_fails_with_its_output(tmp_path: Path, builder, run_build) -> None:
    repo, sha = _app_with_compile(tmp_path, "echo 'compiling...'\necho 'error: boom-4217' >&2\nexit 3\n")
    from tests.e2e.builder.conftest import Recorder
    out = Recorder()
    from builder.interface import BuildRequest
    with pytest.raises(BuildFailed) as e:
        builder.build(BuildRequest(app="app", repo_path=repo, commit=sha, env={}), out)
    assert e.value.reason == "build failed"
    assert "exit 3" in str(e.value)
    assert "compiling..." in out.lines and "error: boom-4217" in out.lines
    _assert_build_container_removed(builder)
    assert list((builder.temp_base).iterdir()) == []


def test_timeout(tmp_path: Path, make_builder, run_build) -> None:
    builder = make_builder(build_timeout=4)
    repo, sha = _app_with_compile(tmp_path, "echo started\nsleep 120\n")
    started = time.monotonic()
    with pytest.raises(BuildFailed) as e:
        run_build(repo, sha, using=builder)
    assert e.value.reason == "build timed out"
    assert time.monotonic() - started < 60
    _assert_build_container_removed(builder)


def test_oversize_slug(tmp_path: Path, make_builder, run_build) -> None:
    builder = make_builder(max_slug_bytes=200_000)
    repo, sha = _app_with_compile(tmp_path, "head -c 2000000 /dev/urandom > \"$1/big.bin\"\n")
    with pytest.raises(BuildFailed) as e:
        run_build(repo, sha, using=builder)
    assert e.value.reason == "slug too large"
    assert list(builder.temp_base.iterdir()) == []


def test_leftovers_are_removed_after_kill_9(tmp_path: Path, make_builder, run_build) -> None:
    """A process running a build is SIGKILLed mid-compile: its container and
    temp dir stay behind, and cleanup_leftovers (run at server start) removes
    them."""
    builder = make_builder()
    repo, sha = _app_with_compile(tmp_path, "echo started\nsleep 300\n")
    s = builder.settings
    script = textwrap.dedent(f"""
        from pathlib import Path
        from builder.docker_builder import DockerBuilder
        from builder.interface import BuildRequest
        from core.settings import Settings
        b = DockerBuilder(Settings(data_dir=Path({str(s.data_dir)!r}), instance={s.instance!r},
                                   stack_image={s.stack_image!r}))
        b.build(BuildRequest(app="app", repo_path=Path({str(repo)!r}), commit={sha!r}, env={{}}),
                lambda line: print(line, flush=True))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=str(ROOT),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "started":
                break
        else:
            pytest.fail("the build never started")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert len(_containers(s.instance)) == 1
    assert list(builder.temp_base.iterdir())
    DockerBuilder(s).cleanup_leftovers()
    assert _containers(s.instance) == []
    assert list(builder.temp_base.iterdir()) == []
    # The killed build's source is still in the app's build volume: the next
    # build starts from its own commit only.
    repo2, sha2 = make_app(tmp_path, {".buildpacks": "./pack\n",
                                      "pack/bin/detect": "#!/bin/sh\necho Pack\n",
                                      "pack/bin/compile": "#!/bin/sh\nls -A \"$1\" > \"$1/seen\"\n"},
                           name="second")
    result, _ = run_build(repo2, sha2, app="app", using=builder)
    assert slug_file(result.slug_path, "seen").split() == [".buildpacks", "pack", "seen"]


def test_read_only_dirs_a_buildpack_left_do_not_outlive_its_build(tmp_path: Path, builder,
                                                                    run_build) -> None:
    """Directories without write permission (as Go's module cache makes) in
    one build's /app must not stay in the app's build volume and end up in
    the next build, nor make it build the old tree."""
    repo, sha = _app_with_compile(tmp_path, 'mkdir -p "$1/ro/deep" && echo old > "$1/ro/deep/f"\n'
                                            'chmod 555 "$1/ro/deep" "$1/ro"\n'
                                            'mkdir -p "$1/.locked/a/b" && touch "$1/.locked/a/b/f"\n'
                                            'chmod 000 "$1/.locked/a/b" "$1/.locked/a" "$1/.locked"\n',
                                  name="first")
    (tmp_path / "first-work" / ".slugignore").write_text("/.locked\n")
    repo, sha = make_app(tmp_path, name="first")
    first, _ = run_build(repo, sha, app="app", using=builder)
    assert slug_file(first.slug_path, "ro/deep/f") == "old\n"
    repo2, sha2 = make_app(tmp_path, {".buildpacks": "./pack\n",
                                      "pack/bin/detect": "#!/bin/sh\necho Pack\n",
                                      "pack/bin/compile": "#!/bin/sh\nls -A \"$1\" > \"$1/seen\"\n",
                                      "new-only": "2\n"},
                           name="second")
    second, _ = run_build(repo2, sha2, app="app", using=builder)
    assert slug_file(second.slug_path, "seen").split() == [".buildpacks", "new-only", "pack",
                                                           "seen"]
    _assert_build_container_removed(builder)
