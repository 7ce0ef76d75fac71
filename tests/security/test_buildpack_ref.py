"""Issue 14, finding 1 (critical): a `.buildpacks` ref that git would read as
an option is refused (the ref check alone, no server; the real push with a
server and Docker is tests/e2e/security/test_buildpack_ref.py)."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("ref", ["-x", "--pathspec-from-file=/etc/passwd", "--upload-pack=id",
                                 "a..b", "a b", "x.lock", "@{-1}", "a:b", "a\\b", "/abs", "a/",
                                 "a//b", ".hidden", "a/.b", "end.", "", "c~1", "c^", "a*", "a?",
                                 "a[b", "\x01", "x" * 256])
def test_refs_git_would_misread_are_refused(ref: str) -> None:
    from builder.remote_git import check_ref

    assert check_ref(ref) is not None


@pytest.mark.parametrize("ref", ["main", "v1.2.3", "feature/x-y_z", "release-2024.01",
                                 "deadbeef", "0123456789abcdef0123456789abcdef01234567",
                                 "refs/tags/v1", "a@b"])
def test_ref_names_and_shas_pass(ref: str) -> None:
    from builder.remote_git import check_ref

    assert check_ref(ref) is None
