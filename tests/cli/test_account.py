"""signup, login, logout, account, account:api_key:reset, account:ssh_keys*."""
from __future__ import annotations

import json
import stat

from tests.api.helpers import new_public_key
from tests.cli.conftest import Cli
from tests.conftest import free_port, unique


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_signup_writes_netrc_and_config(cli: Cli) -> None:
    email = f"{unique('c')}@example.com"
    data = cli.json("signup", "--email", email, "--password", "long enough password")
    assert data["email"] == email and data["api_key"]
    netrc = cli.home / ".netrc"
    assert netrc.read_text().split() == ["machine", "127.0.0.1", "login", email,
                                         "password", data["api_key"]]
    assert mode(netrc) == 0o600
    config = cli.home / ".config" / "shipway" / "config.json"
    assert mode(config) == 0o600
    assert json.loads(config.read_text())["servers"][cli.server.url] == {
        "email": email, "api_key": data["api_key"]}
    assert cli.json("account")["email"] == email
    assert email in cli.ok("account").stdout


def test_login_replaces_only_this_hosts_netrc_entry(cli: Cli) -> None:
    email, password = cli.signup()
    netrc = cli.home / ".netrc"
    netrc.write_text("# mine\nmachine github.com login me password tok\n"
                     "machine 127.0.0.1\n  login old@example.com\n  password oldkey\n"
                     "machine example.org login x password y\n")
    netrc.chmod(0o644)
    out = cli.ok("login", "--email", email, env={"SHIPWAY_PASSWORD": password}).stdout
    assert "Logged in as" in out
    text = netrc.read_text()
    assert "# mine" in text and "machine github.com login me password tok" in text
    assert "machine example.org login x password y" in text
    assert "oldkey" not in text and text.count("machine 127.0.0.1") == 1
    assert mode(netrc) == 0o600
    assert cli.json("account")["email"] == email


def test_login_errors(cli: Cli) -> None:
    email, _ = cli.signup()
    assert cli.fails(1, "login", "--email", email, "--password", "wrong password") == \
        "Error: wrong email or password"
    assert "password" in cli.fails(2, "login", "--email", email)
    assert "email" in cli.fails(2, "login", "--password", "x")
    port = free_port()
    error = cli.fails(1, "login", "--email", email, "--password", "x",
                      "--url", f"http://127.0.0.1:{port}")
    assert "cannot reach the Shipway server" in error
    assert "invalid server URL" in cli.fails(2, "apps", "--url", "ftp://x")


def test_logout_removes_credentials(cli: Cli) -> None:
    cli.signup()
    assert "Logged out" in cli.ok("logout").stdout
    assert "127.0.0.1" not in (cli.home / ".netrc").read_text()
    assert json.loads((cli.home / ".config/shipway/config.json").read_text())["servers"] == {}
    assert cli.fails(1, "account").startswith("Error: not logged in to")
    assert cli.json("logout")["logged_out"] is False


def test_config_dir_override(cli: Cli, tmp_path) -> None:
    other = tmp_path / "cfg"
    cli.env["SHIPWAY_CONFIG_DIR"] = str(other)
    cli.signup()
    assert (other / "config.json").exists()
    assert not (cli.home / ".config" / "shipway" / "config.json").exists()


def test_api_key_reset(logged_in: Cli) -> None:
    old = (logged_in.home / ".netrc").read_text().split()[-1]
    data = logged_in.json("account:api_key:reset", "--yes")
    assert data["api_key"] != old
    assert (logged_in.home / ".netrc").read_text().split()[-1] == data["api_key"]
    logged_in.ok("account")  # the CLI uses the new key
    assert logged_in.server.api(old).get("/api/account").status_code == 401


def test_ssh_keys(logged_in: Cli, tmp_path) -> None:
    cli = logged_in
    assert cli.json("account:ssh_keys") == []
    assert "(none)" in cli.ok("account:ssh_keys").stdout
    literal = new_public_key("literal@host")
    first = cli.json("account:ssh_keys:add", literal)
    key_file = tmp_path / "k.pub"
    key_file.write_text(new_public_key("file@host") + "\n")
    second = cli.json("account:ssh_keys:add", f"@{key_file}")
    (cli.home / ".ssh").mkdir()
    (cli.home / ".ssh" / "id_ed25519.pub").write_text(new_public_key("default@host"))
    third = cli.json("account:ssh_keys:add")
    assert [k["comment"] for k in cli.json("account:ssh_keys")] == \
        ["literal@host", "file@host", "default@host"]
    table = cli.ok("account:ssh_keys").stdout
    assert first["fingerprint"] in table and "FINGERPRINT" in table
    error = cli.fails(1, "account:ssh_keys:add", "ssh-ed25519 garbage")
    assert "invalid SSH public key" in error
    assert "already in use" in cli.fails(1, "account:ssh_keys:add", literal)
    cli.ok("account:ssh_keys:remove", str(first["id"]))
    cli.ok("account:ssh_keys:remove", second["fingerprint"])
    assert [k["id"] for k in cli.json("account:ssh_keys")] == [third["id"]]
    assert cli.fails(1, "account:ssh_keys:remove", "999999").startswith("Error: no SSH key")
    assert "cannot read" in cli.fails(2, "account:ssh_keys:add", "@/nonexistent/key.pub")


def test_global_options_and_credential_sources(cli: Cli) -> None:
    email, _ = cli.signup()
    key = (cli.home / ".netrc").read_text().split()[-1]
    # --url/--json/-a before the verb work like after it; --url beats SHIPWAY_URL.
    data = json.loads(cli.ok("--url", cli.server.url, "--json", "account",
                             env={"SHIPWAY_URL": "http://127.0.0.1:1"}).stdout)
    assert data["email"] == email
    assert "cannot reach" in cli.fails(1, "account", env={"SHIPWAY_URL": "http://127.0.0.1:1",
                                                          "SHIPWAY_API_KEY": key})
    # Without the CLI's config, the ~/.netrc entry is enough ...
    (cli.home / ".config" / "shipway" / "config.json").unlink()
    assert cli.json("account")["email"] == email
    # ... and SHIPWAY_API_KEY wins over it, even over a stale entry that
    # requests would otherwise send on its own.
    (cli.home / ".netrc").write_text(f"machine 127.0.0.1 login {email} password sw_stale\n")
    assert "invalid API key" in cli.fails(1, "account")
    assert cli.json("account", env={"SHIPWAY_API_KEY": key})["email"] == email
    (cli.home / ".netrc").unlink()
    assert cli.fails(1, "account").startswith("Error: not logged in")
    assert "invalid API key" in cli.fails(1, "account", env={"SHIPWAY_API_KEY": "sw_bogus"})
