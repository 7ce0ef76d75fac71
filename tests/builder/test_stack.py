"""The stack image recipe: the host's apt sources in both formats and the
tag derived from the recipe (tests/e2e/builder/test_stack.py: the image on
the engine and the configured override)."""
from __future__ import annotations

from pathlib import Path

import pytest

from builder import stack
from core.settings import Settings


def test_mirror_from_one_line_and_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://two.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://two.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\nTypes: deb\nEnabled: no\n"
        "URIs: http://off.example/\nSuites: bookworm\n")
    (tmp_path / "sources.list.d" / "other.list.disabled").write_text("deb http://x/ bookworm main\n")
    main, entries = stack.debian_mirror(tmp_path)
    assert main == "http://one.example/debian"
    assert entries == [("http://one.example/debian", "bookworm"),
                       ("http://two.example/debian", "bookworm"),
                       ("http://two.example/debian", "bookworm-updates"),
                       ("http://two.example/debian-security", "bookworm-security")]


def test_no_bookworm_source_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://x.example/ubuntu jammy main\n")
    with pytest.raises(RuntimeError, match="bookworm"):
        stack.debian_mirror(tmp_path)


def test_tag_follows_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    before = stack.recipe_version()
    # the base's tag, then the host's CA set's (tests/builder/test_stack_ca.py)
    assert stack.stack_image_tag(Settings()).startswith(f"shipway/stack:{before}-ca")
    monkeypatch.setattr(stack, "PACKAGES", stack.PACKAGES + ["jq"])
    assert stack.recipe_version() != before
    assert stack.stack_image_tag(Settings(stack_image="my/stack:1")) == "my/stack:1"
