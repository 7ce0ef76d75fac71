"""ps, ps:scale, ps:restart (on an app with no release yet: the formation is
stored and applied at the first deploy; tests/e2e/cli/test_deploy.py scales a
running app), domains*, access*."""
from __future__ import annotations

import os
from pathlib import Path

from cli.ps import describe_uptime
from tests.cli.conftest import Cli
from tests.security.test_domains import TxtZone
from tests.conftest import unique


def test_ps_scale_restart(logged_in: Cli, app: str) -> None:
    cli = logged_in
    assert "nothing to scale" in cli.fails(2, "ps:scale", "-a", app)
    assert "TYPE=N" in cli.fails(2, "ps:scale", "web=two", "-a", app)
    assert "TYPE=N" in cli.fails(2, "ps:scale", "web=\u00b2", "-a", app)
    cli.fails(2, "ps:scale", "--replicas", "-1", "-a", app)
    data = cli.json("ps", "-a", app)
    default = {"size": None, "memory_mb": 512, "cpus": 1.0}  # the server's run_memory, run_cpus
    assert data == {"formation": {"web": 1}, "replica_size": default, "replicas": [],
                    "oneoffs": []}  # issue 18: one-offs running now
    shown = cli.ok("ps", "-a", app).stdout
    assert "web=1" in shown and "replica size: default (512 MiB, 1 CPU)" in shown
    assert cli.json("ps:scale", "--replicas", "2", "-a", app)["formation"] == {"web": 2}
    assert "web=3" in cli.ok("ps:scale", "web=3", "-a", app).stdout
    assert cli.json("ps", "-a", app)["formation"] == {"web": 3}
    # --size: GiB of memory and CPUs per replica, as Gigalixir's
    assert "not a number" in cli.fails(2, "ps:scale", "--size", "big", "-a", app)
    assert "positive" in cli.fails(2, "ps:scale", "--size", "0", "-a", app)
    assert "from 0.1 to 8" in cli.fails(1, "ps:scale", "--size", "0.05", "-a", app)
    said = cli.ok("ps:scale", "--size", "0.25", "web=2", "-a", app).stdout
    assert "replica size 0.25 (256 MiB, 0.25 CPU); web=2" in said
    data = cli.json("ps", "-a", app)
    assert data["formation"] == {"web": 2}
    assert data["replica_size"] == {"size": 0.25, "memory_mb": 256, "cpus": 0.25}
    assert "replica size" in cli.ok("apps:info", "-a", app).stdout
    # CPUs as the runner gives them: at most the host's
    big = cli.json("ps:scale", "--size", "8", "-a", app)["replica_size"]
    assert big == {"size": 8.0, "memory_mb": 8192, "cpus": min(8.0, float(os.cpu_count() or 1))}
    assert cli.json("ps:scale", "--size", "default", "-a", app) == {"replica_size": default}
    assert "Restarted" in cli.ok("ps:restart", "-a", app).stdout


def test_domains(logged_in: Cli, app: str) -> None:
    cli = logged_in
    assert cli.json("domains", "-a", app) == []
    host = f"www.{unique('corp')}.example"  # a registrable domain of its own
    assert f"Added {host}" in cli.ok("domains:add", host.upper(), "-a", app).stdout
    assert [d["hostname"] for d in cli.json("domains", "-a", app)] == [host]
    assert host in cli.ok("domains", "-a", app).stdout
    assert "invalid hostname" in cli.fails(1, "domains:add", "not a host", "-a", app)
    cli.ok("domains:remove", host, "-a", app)
    assert cli.json("domains", "-a", app) == []
    assert "has no domain" in cli.fails(1, "domains:remove", host, "-a", app)


def test_domains_verify_with_a_dns_proof(make_server, tmp_path: Path) -> None:
    """SHIPWAY_DOMAIN_VERIFY=dns: domains:add says which TXT record to make,
    domains:verify fails clearly until it exists, then serves the name."""
    zone = TxtZone().start()
    try:
        server = make_server(env={"SHIPWAY_DOMAIN_VERIFY": "dns",
                                  "SHIPWAY_DNS_SERVER": f"127.0.0.1:{zone.port}"})
        (tmp_path / "home").mkdir()
        cli = Cli(server, tmp_path / "home")
        cli.signup()
        app = unique("cli")
        cli.ok("create", app)
        host = f"www.{unique('corp')}.example"
        said = cli.ok("domains:add", host, "-a", app).stdout
        record = f"_shipway-challenge.{host}"
        assert record in said and f"shipway domains:verify {host}" in said, said
        token = cli.json("domains", "-a", app)[0]["challenge"]["value"]
        assert f'"{token}"' in said
        assert "no (domains:verify)" in cli.ok("domains", "-a", app).stdout
        assert f"create a TXT record {record}" in cli.fails(1, "domains:verify", host, "-a", app)
        zone.records[record] = token
        assert f"{host} is verified" in cli.ok("domains:verify", host, "-a", app).stdout
        assert cli.json("domains", "-a", app)[0]["verified"] is True
        assert host in cli.json("apps:info", "-a", app)["domains"]
    finally:
        zone.stop()

def test_access(logged_in: Cli, app: str) -> None:
    cli = logged_in
    other = Cli(cli.server, cli.home.parent / "friend")
    other.home.mkdir()
    email, _ = other.signup()
    assert cli.json("access", "-a", app) == []
    assert f"{email} can now push" in cli.ok("access:add", email.upper(), "-a", app).stdout
    assert cli.json("access", "-a", app) == [{"email": email}]
    assert email in cli.ok("access", "-a", app).stdout
    assert "already a collaborator" in cli.fails(1, "access:add", email, "-a", app)
    assert "no user" in cli.fails(1, "access:add", "nobody@example.com", "-a", app)
    # The collaborator sees and configures the app but cannot manage access.
    other.ok("config:set", "FROM_FRIEND=1", "-a", app)
    assert "only the owner" in other.fails(1, "access:remove", email, "-a", app)
    cli.ok("access:remove", email, "-a", app)
    assert cli.json("access", "-a", app) == []
    assert other.fails(1, "apps:info", "-a", app) == f"Error: no app named '{app}'"


def test_uptime_reads_as_heroku_ps_shows_it() -> None:
    assert [describe_uptime(s) for s in (None, 0, 42, 303, 7500, 90061, 273600)] == \
        ["", "0s", "42s", "5m 3s", "2h 5m", "1d 1h", "3d 4h"]
