"""The stack image on the engine: an existing image builds nothing, and the
configured override is used as is (the recipe alone: tests/builder/test_stack.py)."""
from __future__ import annotations

import docker

from builder import stack
from core.settings import Settings


def test_existing_image_builds_nothing(stack_image: str) -> None:
    lines: list[str] = []
    assert stack.ensure_stack_image(Settings(), lines.append) == stack_image
    assert lines == []
    image = docker.from_env().images.get(stack_image)
    assert "LANG=C.UTF-8" in image.attrs["Config"]["Env"]
    # a configured image is used as is, never built
    assert stack.ensure_stack_image(Settings(stack_image="elsewhere/stack:x"), lines.append) \
        == "elsewhere/stack:x"
