"""certs and certs:auto:refresh through the real CLI against the shared test
server, which has no ACME directory (issue 16 item 3): the names are listed
with no certificate, a refresh is a one-line error (not a silent success),
and another user's app is not found. tests/e2e/test_certs_refresh.py runs
the refresh against a real ACME server."""
from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli


def test_certs_without_acme(logged_in: Cli, app: str, tmp_path: Path) -> None:
    cli = logged_in
    host = f"{app}.localhost"
    assert cli.json("certs", "-a", app) == [{"hostname": host, "certificate": None}]
    shown = cli.ok("certs", "-a", app).stdout
    assert host in shown and "off (no ACME)" in shown
    said = cli.fails(1, "certs:auto:refresh", "-a", app)
    assert "automatic certificates are off" in said and "SHIPWAY_ACME_DIRECTORY" in said
    assert "certs:auto:refresh" not in [a["action"] for a in cli.json("apps:activity", "-a", app)]
    home = tmp_path / "stranger"
    home.mkdir()
    stranger = Cli(cli.server, home)
    stranger.signup()
    # Not found (the API's 404), before anything about ACME: another user's
    # app is not even said to exist.
    not_found = f"Error: no app named '{app}'"
    assert stranger.fails(1, "certs:auto:refresh", "-a", app, "--domain", host) == not_found
    assert stranger.fails(1, "certs", "-a", app) == not_found
