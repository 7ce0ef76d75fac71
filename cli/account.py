"""signup, login, logout, account and its API key and SSH keys."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cli import context
from cli.client import seg
from cli.session import Session, api_command, pairs, table


def _password(given: str | None, confirm: bool) -> str:
    if given:
        return given
    env = os.environ.get("SHIPWAY_PASSWORD")
    if env:
        return env
    if not sys.stdin.isatty():
        raise click.UsageError("no password: pass --password or set SHIPWAY_PASSWORD")
    return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)


def _email(given: str | None) -> str:
    if given:
        return given
    if not sys.stdin.isatty():
        raise click.UsageError("no email: pass --email")
    return click.prompt("Email")


def _authenticate(session: Session, path: str, email: str | None, password: str | None,
                  verb: str) -> None:
    """Sign up or log in, then keep the API key (~/.netrc and the config)."""
    email = _email(email)
    body = {"email": email, "password": _password(password, confirm=path == "/users")}
    answer = session.client.call("POST", path, body, auth=False)
    context.save_credentials(session.url, answer["email"], answer["api_key"])
    session.emit(answer, f"{verb} as {answer['email']} on {session.url}. The API key is in "
                         f"~/.netrc, so `git push` over HTTP authenticates.")


def register(cli: click.Group) -> None:
    @api_command(cli, "signup")
    @click.option("--email", default=None, help="Your email address.")
    @click.option("--password", default=None, help="Password [SHIPWAY_PASSWORD, or prompt].")
    def signup(session: Session, email: str | None, password: str | None) -> None:
        """Create an account and log in."""
        _authenticate(session, "/users", email, password, "Signed up")

    @api_command(cli, "login")
    @click.option("--email", default=None, help="Your email address.")
    @click.option("--password", default=None, help="Password [SHIPWAY_PASSWORD, or prompt].")
    def login(session: Session, email: str | None, password: str | None) -> None:
        """Log in: store the API key in ~/.netrc and the CLI's config."""
        _authenticate(session, "/login", email, password, "Logged in")

    @api_command(cli, "logout")
    def logout(session: Session) -> None:
        """Forget the API key for this server (~/.netrc and the CLI's config)."""
        removed = context.forget_credentials(session.url)
        session.emit({"logged_out": removed, "url": session.url},
                     f"Logged out of {session.url}." if removed
                     else f"Not logged in to {session.url}.")

    @api_command(cli, "account")
    def account(session: Session) -> None:
        """Show your account."""
        data = session.client.call("GET", "/account")
        session.emit(data, lambda d: pairs({"email": d["email"], "created": d["created_at"]}))

    @api_command(cli, "account:api_key:reset")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    def api_key_reset(session: Session, yes: bool) -> None:
        """Replace your API key (the old one stops working at once)."""
        if not yes and sys.stdin.isatty():
            click.confirm("The current API key will stop working. Continue?", abort=True)
        data = session.client.call("POST", "/account/api_key")
        email, _ = context.credentials(session.url)
        if email is None:
            email = session.client.call("GET", "/account")["email"]
        context.save_credentials(session.url, email, data["api_key"])
        session.emit(data, "New API key saved to ~/.netrc and the CLI's config.")

    @api_command(cli, "account:ssh_keys")
    def ssh_keys(session: Session) -> None:
        """List your SSH public keys."""
        data = session.client.call("GET", "/account/ssh_keys")
        session.emit(data, lambda d: table(
            [(k["id"], k["key_type"], k["fingerprint"], k["comment"]) for k in d],
            ["id", "type", "fingerprint", "comment"]))

    @api_command(cli, "account:ssh_keys:add")
    @click.argument("key", required=False)
    def ssh_keys_add(session: Session, key: str | None) -> None:
        """Add an SSH public key: KEY text, @FILE, or ~/.ssh/id_*.pub."""
        data = session.client.call("POST", "/account/ssh_keys", {"key": _read_key(key)})
        session.emit(data, f"Added SSH key {data['id']} ({data['fingerprint']}).")

    @api_command(cli, "account:ssh_keys:remove")
    @click.argument("key_id")
    def ssh_keys_remove(session: Session, key_id: str) -> None:
        """Remove an SSH key by id or fingerprint."""
        data = session.client.call("DELETE", f"/account/ssh_keys/{seg(key_id)}")
        session.emit(data, f"Removed SSH key {key_id}.")


def _read_key(key: str | None) -> str:
    if key is None:
        found = sorted((context.home() / ".ssh").glob("id_*.pub"))
        if not found:
            raise click.UsageError("no KEY given and no ~/.ssh/id_*.pub found")
        path = found[0]
    elif key.startswith("@"):
        path = Path(key[1:]).expanduser()
    elif " " not in key.strip() and Path(key).expanduser().is_file():
        path = Path(key).expanduser()
    else:
        return key.strip()
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise click.UsageError(f"cannot read {path}: {e}") from None
