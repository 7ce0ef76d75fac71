"""A Python app with dependencies, end to end, against the package index
the host itself uses (reached with the host's CAs, which the stack image
carries): Flask + gunicorn build, deploy and answer through the router;
an unchanged second push downloads nothing and builds at least 3x faster;
runtime.txt is honoured or refused in one line; an index that cannot be
reached is one line, and the server's index variable reaches builds with
its credentials never shown."""
from __future__ import annotations

import datetime as dt
import tarfile

import pytest

from tests.e2e.helpers import User, fetch, new_app

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _build_seconds(user: User, app: str) -> list[float]:
    """Each build's duration from the app's build log (each line carries the
    server's time): from `Building` to the stored slug's line."""
    lines = user.shipway_json("-a", app, "logs", "-n", "1500")["lines"]
    starts, spans = {}, []
    for line in lines:
        if "shipway[build]" not in line:
            continue
        at = dt.datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00"))
        if "-----> Building " in line:
            starts["build"] = at
        elif "-----> Slug " in line and "build" in starts:
            spans.append((at - starts.pop("build")).total_seconds())
    return spans


def test_flask_app_builds_deploys_and_rebuilds_from_cache(make_server, tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "home", "python-flask", "flask")
    (user.src / "runtime.txt").write_text("python-3.11\n")
    user.commit("runtime.txt: any 3.11")

    first = user.push()
    assert "Downloading flask" in first.stderr, first.stderr
    assert "(from runtime.txt)" in first.stderr
    assert "Released v1" in first.stderr
    r = fetch(server, app)
    assert r.status_code == 200 and r.text.startswith("Hello from Flask (release v1)")
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"  # Flask's, not http.server's

    user.commit("nothing changed")
    second = user.push()
    assert "Released v2" in second.stderr
    assert "requirements.txt unchanged: reusing the cached virtualenv" in second.stderr
    assert "Downloading" not in second.stderr and "Collecting" not in second.stderr
    assert fetch(server, app).text.startswith("Hello from Flask (release v2)")

    cold, warm = _build_seconds(user, app)
    assert cold >= 3 * warm, f"cold build {cold:.2f} s, warm {warm:.2f} s"

    # A Python the stack does not have: refused in one line naming what it has.
    (user.src / "runtime.txt").write_text("python-3.99.1\n")
    user.commit("python 3.99")
    refused = user.push(check=False)
    assert refused.returncode != 0
    assert "runtime.txt asks for Python 3.99.1; this stack has Python 3.11." in refused.stderr
    assert fetch(server, app).text.startswith("Hello from Flask (release v2)")


def test_unreachable_index_is_one_line_and_proxy_env_stays_out_of_slugs(
        make_server, tmp_path) -> None:
    # The server's own index variable (with credentials) reaches builds; a
    # closed port on loopback is an index that cannot be reached.
    index = "https://builder:s3cret-token@127.0.0.1:9/simple"
    server = make_server(env={"PIP_INDEX_URL": index, "HTTPS_PROXY": ""})
    user, app = new_app(server, tmp_path / "home", "python-flask", "noindex")
    push = user.push(check=False)
    assert push.returncode != 0
    said = [line.strip() for line in push.stderr.splitlines() if "could not reach" in line]
    assert said == ["remote: -----> pip could not reach the package index "
                    "https://***@127.0.0.1:9/simple: [Errno 111] Connection refused"], \
        push.stderr + server.log()[-3000:]
    assert "Retrying" not in push.stderr and "No matching distribution" not in push.stderr
    assert "s3cret-token" not in push.stderr
    assert "s3cret-token" not in server.log()

    # An app that installs nothing builds; its slug holds no trace of it.
    (user.src / "requirements.txt").write_text("# nothing\n")
    (user.src / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    user.commit("no deps")
    assert "Released v1" in user.push().stderr
    slugs = list((server.data_dir).rglob("*.tar.gz"))
    assert slugs
    for slug in slugs:
        with tarfile.open(slug, "r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile():
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    assert b"s3cret-token" not in data, member.name


def test_proxy_and_index_variables_are_read_and_shown_masked(tmp_path) -> None:
    """`--print-config` shows what builds get, credentials masked; both
    spellings of a proxy variable reach builds."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "https_proxy": "http://me:pr0xy-pass@10.0.0.1:3128",
           "PIP_EXTRA_INDEX_URL": "https://tok:idx-pass@pypi.example/simple",
           "NPM_CONFIG_REGISTRY": "https://npm.example/"}
    done = subprocess.run([sys.executable, "-m", "cli.main", "server", "--data-dir",
                           str(tmp_path), "--print-config"], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pr0xy-pass" not in done.stdout and "idx-pass" not in done.stdout
    shown = json.loads(done.stdout)["settings"]["build_env"]
    for expected in ("'HTTPS_PROXY': 'http://***@10.0.0.1:3128'",
                     "'https_proxy': 'http://***@10.0.0.1:3128'",
                     "'PIP_EXTRA_INDEX_URL': 'https://***@pypi.example/simple'",
                     "'NPM_CONFIG_REGISTRY': 'https://npm.example/'"):
        assert expected in shown
