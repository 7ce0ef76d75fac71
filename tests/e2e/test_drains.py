"""Drains through a real `shipway server` and a deployed app: a TCP and a
TLS syslog server on 127.0.0.1 (allowed by SHIPWAY_FETCH_ALLOW in this
test only) get the app's lines while a drain that never reads is attached
too (its drops are counted in tests/logger/test_drains.py: a few hundred
lines fit in the socket buffers here); `drains` shows the counters,
`drains:remove` stops one; a server without the allow setting refuses a
loopback drain and never echoes a drain URL's password."""
from __future__ import annotations

import pytest

from tests.e2e.helpers import User, fetch, new_app, wait_for
from tests.logger.test_drains import SyslogServer, _certificate

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_drains_forward_and_a_stuck_one_holds_up_nobody(make_server, tmp_path) -> None:
    server_context, bundle = _certificate(tmp_path)
    plain, secure, stuck = SyslogServer(), SyslogServer(server_context), SyslogServer(read=False)
    server = make_server(env={"SHIPWAY_FETCH_ALLOW": "127.0.0.1",
                              "SHIPWAY_DRAIN_CA_BUNDLE": str(bundle)})
    user, app = new_app(server, tmp_path / "home", "procfile", "drains")
    for url in (f"syslog://127.0.0.1:{stuck.port}", f"syslog://127.0.0.1:{plain.port}",
                f"syslog+tls://127.0.0.1:{secure.port}"):
        assert "Added drain" in user.shipway("-a", app, "drains:add", url).stdout
    user.push()
    for i in range(300):
        assert fetch(server, app, f"/req-{i}").status_code == 200
    for sink in (plain, secure):
        wait_for(lambda: any(b"/req-299" in m for m in sink.messages), timeout=60)
        assert any(b" shipway.build - - -----> Building" in m for m in sink.messages)
        assert any(b"<190>1 " in m and f" {app} web.".encode() in m for m in sink.messages)
    listed = user.shipway_json("-a", app, "drains")
    by_port = {d["url"].rsplit(":", 1)[1]: d for d in listed}
    assert by_port[str(plain.port)]["dropped"] == 0 and by_port[str(plain.port)]["sent"] > 300
    assert "DROPPED" in user.shipway("-a", app, "drains").stdout

    drain = by_port[str(plain.port)]
    user.shipway("-a", app, "drains:remove", str(drain["id"]))
    assert len(user.shipway_json("-a", app, "drains")) == 2
    for sink in (plain, secure, stuck):
        sink.close()


def test_a_loopback_drain_is_refused_without_the_allow_setting(make_server, tmp_path) -> None:
    server = make_server()
    user = User(server, tmp_path / "home")
    user.shipway("signup", "--email", "drains-refused@example.com", "--password", "pw pw pw pw")
    user.shipway("create", f"refused-{server.instance[-8:]}")
    out = user.shipway("-a", f"refused-{server.instance[-8:]}", "drains:add",
                       "syslog://127.0.0.1:6514", check=False)
    assert out.returncode != 0 and "loopback" in out.stderr + out.stdout
    secret = user.shipway("-a", f"refused-{server.instance[-8:]}", "drains:add",
                          "https://me:hunter2@10.0.0.1/logs", check=False)
    assert secret.returncode != 0 and "hunter2" not in secret.stderr + secret.stdout
