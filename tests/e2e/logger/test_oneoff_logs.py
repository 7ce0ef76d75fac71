"""One-off containers' output in the app's durable logs (issue 18), named
as Heroku names them: `app[run.N]` for `shipway run` (attached or
detached), `app[migrate.N]` for ps:migrate, `app[release.N]` for the
release phase; the phase's own progress stays `shipway[deploy]`."""
from __future__ import annotations

import re

import pytest

from tests.e2e.helpers import new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_oneoff_output_lands_in_the_logs_under_its_own_process(make_server,
                                                                 tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "owner", "procfile", "oneofflogs",
                        env={"MIGRATE_COMMAND": "echo migrate-marker"})
    (user.src / "Procfile").write_text("web: python3 serve.py\n"
                                       "release: echo release-marker-$APP_VERSION\n")
    user.commit("release phase")
    user.push()

    ran = user.shipway("-a", app, "run", "--", "sh", "-c", "echo attached-marker")
    assert "attached-marker" in ran.stdout  # still printed for the caller
    user.shipway("-a", app, "run", "--detach", "--", "echo detached-marker")
    assert "migrate-marker" in user.shipway("-a", app, "migrate").stdout

    def logs(*extra: str) -> str:
        return user.shipway("-a", app, "logs", "-n", "1500", *extra).stdout

    out = wait_for(lambda: (lambda text: text if "detached-marker" in text else None)(logs()),
                   timeout=60)
    for kind, marker in (("run", "attached-marker"), ("run", "detached-marker"),
                         ("migrate", "migrate-marker"), ("release", "release-marker-v1")):
        assert re.search(rf"^\S+Z app\[{kind}\.\d{{4}}\]: {marker}$", out, re.M), (marker, out)
    # The phase's own lines are the platform's, not the one-off's.
    assert re.search(r"shipway\[deploy\]: -----> Running release command of v1", out), out
    assert not re.search(r"shipway\[deploy\]: release-marker", out), out
    # `--source run` (the process type) picks the runs and nothing else.
    runs = logs("--source", "run")
    assert "attached-marker" in runs and "detached-marker" in runs
    assert "migrate-marker" not in runs and "app[web." not in runs
