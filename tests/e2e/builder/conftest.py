"""Builder fixtures: a DockerBuilder on the real engine with its own Docker
instance label (everything it made is removed at teardown)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from builder.docker_builder import DockerBuilder
from builder.interface import BuildRequest, BuildResult
from core.settings import Settings
from tests.builder.helpers import git_daemon
from tests.conftest import remove_docker_objects, unique


class Recorder:
    """Collects the streamed output lines (with their arrival times)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def make_builder(tmp_path: Path, stack_image: str) -> Iterator[Callable[..., DockerBuilder]]:
    instances: list[str] = []
    made: list[DockerBuilder] = []

    def make(**overrides: Any) -> DockerBuilder:
        instance = overrides.pop("instance", None) or unique("test")
        instances.append(instance)
        settings = Settings(data_dir=overrides.pop("data_dir", tmp_path / "data"),
                            instance=instance, stack_image=stack_image,
                            build_memory="1g", **overrides)
        made.append(DockerBuilder(settings))
        return made[-1]

    yield make
    for each in made:
        each.close()
    for instance in instances:
        remove_docker_objects(instance)


@pytest.fixture
def builder(make_builder: Callable[..., DockerBuilder]) -> DockerBuilder:
    return make_builder()


@pytest.fixture
def run_build(builder: DockerBuilder) -> Callable[..., tuple[BuildResult, Recorder]]:
    def run(repo: Path, commit: str, app: str = "app", env: dict[str, str] | None = None,
            clean: bool = False, using: DockerBuilder | None = None) -> tuple[BuildResult, Recorder]:
        out = Recorder()
        result = (using or builder).build(
            BuildRequest(app=app, repo_path=repo, commit=commit, env=env or {},
                         clean_cache=clean), out)
        return result, out

    return run


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A git daemon serving `tmp_path/served/*` and its base URL."""
    base = tmp_path / "served"
    base.mkdir()
    yield from ((base, url) for url in git_daemon(base))
