"""ps, ps:scale, ps:restart, domains*, access*.

ps, scale and restart need the runner (its deployer). Until it is built the
server answers 501 and the CLI must say so in one line; once it is, these
tests check the real result."""
from __future__ import annotations

from tests.cli.conftest import Cli
from tests.conftest import unique


def runner_built(cli: Cli, app: str) -> bool:
    api_key = (cli.home / ".netrc").read_text().split()[-1]
    return cli.server.api(api_key).get(f"/api/apps/{app}/ps").status_code != 501


def test_ps_scale_restart(logged_in: Cli, app: str) -> None:
    cli = logged_in
    assert "nothing to scale" in cli.fails(2, "ps:scale", "-a", app)
    assert "TYPE=N" in cli.fails(2, "ps:scale", "web=two", "-a", app)
    cli.fails(2, "ps:scale", "--replicas", "-1", "-a", app)
    if runner_built(cli, app):
        data = cli.json("ps", "-a", app)
        assert data["formation"] == {"web": 1} and data["replicas"] == []
        assert cli.json("ps:scale", "--replicas", "2", "-a", app)["formation"]["web"] == 2
        assert cli.json("ps", "-a", app)["formation"]["web"] == 2
    else:
        for args in (["ps"], ["ps:scale", "--replicas", "2"], ["ps:scale", "web=2"],
                     ["ps:restart"]):
            assert cli.fails(1, *args, "-a", app).startswith("Error: not implemented yet")

def test_domains(logged_in: Cli, app: str) -> None:
    cli = logged_in
    assert cli.json("domains", "-a", app) == []
    host = f"{unique('www')}.example.com"
    done = cli("domains:add", host, "-a", app)
    # The domain is stored first; refreshing the route needs the runner.
    assert done.returncode == 0 or "not implemented yet" in done.stderr, done.stderr
    assert [d["hostname"] for d in cli.json("domains", "-a", app)] == [host]
    assert host in cli.ok("domains", "-a", app).stdout
    assert "invalid hostname" in cli.fails(1, "domains:add", "not a host", "-a", app)
    done = cli("domains:remove", host, "-a", app)
    assert done.returncode == 0 or "not implemented yet" in done.stderr, done.stderr
    assert cli.json("domains", "-a", app) == []
    assert "has no domain" in cli.fails(1, "domains:remove", host, "-a", app)

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
