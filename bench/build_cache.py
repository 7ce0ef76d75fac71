#!/usr/bin/env python3
"""Build cache benchmark: the Elixir example and the Python (Flask +
gunicorn, from the package index the host uses) example built cold (empty
cache) and then again unchanged (warm cache), in the same run, with the real
DockerBuilder.

Prints both times and the ratio cold/warm for each app (goals: warm at
least 5x faster for Elixir, 3x for Python, whose cold build is mostly
downloads and the virtualenv, which a warm one reuses).
Each time is `build()` returning the slug, as a push waits for it; the build
container's removal, which goes on in the background after that, is waited
for between builds and counted in neither. So is the start of the standby
container that follows it, which the warm build then takes, as a push does
within `build_standby_ttl` (10 min) of the app's last build; a cold build
never has one (clearing the cache removes it). `--no-standby` measures
warm builds that start their own container, as after a longer pause.
Run: .venv/bin/python bench/build_cache.py [--runs N] [--no-standby] [--app elixir|python]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.docker_builder import DockerBuilder  # noqa: E402
from builder.interface import BuildRequest  # noqa: E402
from builder.stack import ensure_stack_image  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.builder.helpers import make_app  # noqa: E402
from tests.conftest import remove_docker_objects  # noqa: E402


def timed_build(builder: DockerBuilder, request: BuildRequest) -> float:
    builder.wait_for_cleanup()
    started = time.monotonic()
    result = builder.build(request, lambda line: None)
    elapsed = time.monotonic() - started
    result.slug_path.unlink()
    return elapsed


APPS = {"elixir": ("elixir", 5), "python": ("python-flask", 3)}  # example, goal


def measure(builder: DockerBuilder, tmp: Path, app: str, runs: int, standby: str) -> None:
    """`runs` cold/warm pairs of one example; prints each and the medians."""
    example, goal = APPS[app]
    repo, sha = make_app(tmp, copy_from=ROOT / "examples" / example, name=app)
    colds, warms = [], []
    for run in range(runs):
        cold = timed_build(builder, BuildRequest(app=app, repo_path=repo, commit=sha,
                                                 env={}, clean_cache=True))
        warm = timed_build(builder, BuildRequest(app=app, repo_path=repo, commit=sha, env={}))
        colds.append(cold)
        warms.append(warm)
        print(f"{app} run {run + 1}: cold {cold:.2f} s, warm {warm:.2f} s, "
              f"ratio {cold / warm:.2f}x", flush=True)
    cold, warm = statistics.median(colds), statistics.median(warms)
    print(f"{example} example build: cold {cold:.2f} s, warm (unchanged, {standby} a standby "
          f"container) {warm:.2f} s (medians of {runs}); warm is {cold / warm:.2f}x "
          f"faster (goal >= {goal}x)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="cold/warm pairs to measure")
    parser.add_argument("--no-standby", action="store_true",
                        help="no standby build containers (build_standby_ttl=0)")
    parser.add_argument("--app", choices=sorted(APPS), action="append",
                        help="the example(s) to measure (default: all)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-build-cache-"))
    instance = f"bench{uuid.uuid4().hex[:8]}"
    builder: DockerBuilder | None = None
    try:
        settings = Settings(data_dir=tmp / "data", instance=instance)
        image = ensure_stack_image(settings, lambda line: print(line, flush=True))
        settings = Settings(data_dir=tmp / "data", instance=instance, stack_image=image,
                            build_standby_ttl=0 if args.no_standby else 600)
        builder = DockerBuilder(settings)
        standby = "without" if args.no_standby else "with"
        for app in args.app or list(APPS):
            measure(builder, tmp, app, args.runs, standby)
    finally:
        if builder is not None:
            builder.close()
        remove_docker_objects(instance)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
