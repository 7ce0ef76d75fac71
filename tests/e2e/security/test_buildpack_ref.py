"""Issue 14, finding 1 (critical): a `.buildpacks` ref that git would read as
an option (`#--pathspec-from-file=FILE`) made `git checkout` print FILE, a
secret of the data dir, back to the pusher. Now the push is rejected with a
clear message and the file's content is nowhere: push output, build record
(API), app logs. Real server, real git push, an allowed local git server (so
the fetch itself would go ahead). The check of refs alone is
tests/security/test_buildpack_ref.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.security.test_fetch_guard import World, push_with, world  # noqa: F401 (fixture)


@pytest.mark.parametrize("secret_file", ["slug-url.secret", "api-key.secret"])
def test_option_ref_reads_no_host_file(world: World, tmp_path: Path,  # noqa: F811
                                       secret_file: str) -> None:
    user, app = world.pusher(tmp_path, "ref")
    path = world.server.data_dir / secret_file
    if not path.exists():
        pytest.skip(f"{secret_file} not made by this server")
    secret = path.read_text().strip()
    url = f"http://127.0.0.1:{world.githttp.port}/pack.git"
    done = push_with(user, {".buildpacks": f"{url}#--pathspec-from-file={path}\n"})
    text = world.everything_said(user, app, done)
    assert done.returncode != 0
    assert "ref" in text and "refused" in text, text
    assert secret not in text and secret[:16] not in text
