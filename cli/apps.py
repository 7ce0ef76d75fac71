"""create, apps, apps:info, apps:destroy, git:remote."""
from __future__ import annotations

import sys
from typing import Any

import click

from cli import context
from cli.client import seg
from cli.ps import describe_size
from cli.session import Session, api_command, pairs, table


def _remote_note(url: str) -> str:
    """Point the `shipway` remote at `url` when inside a git repository."""
    if not context.in_git_repo():
        return ""
    return f"\nGit remote '{context.REMOTE}' {context.set_git_remote(url)}: {url}"


def register(cli: click.Group) -> None:
    @api_command(cli, "create")
    @click.argument("name", required=False)
    @click.option("-n", "--name", "name_opt", default=None, help="App name (same as NAME).")
    def create(session: Session, name: str | None, name_opt: str | None) -> None:
        """Create an app (and a `shipway` git remote when inside a repo)."""
        wanted = name or name_opt
        data = session.client.call("POST", "/apps", {"name": wanted} if wanted else {})
        note = _remote_note(data["urls"]["git_http"])
        session.emit(data, f"Created app {data['name']}.\n"
                           f"  git push: {data['urls']['git_http']}\n"
                           f"  web:      {data['urls']['web']}{note}")

    @api_command(cli, "apps")
    def apps(session: Session) -> None:
        """List your apps (owned and shared)."""
        data = session.client.call("GET", "/apps")
        session.emit(data, lambda d: table(
            [(a["name"], a["role"], a["owner"], a["urls"]["web"]) for a in d],
            ["name", "role", "owner", "url"]))

    @api_command(cli, "apps:info", app=True)
    def info(session: Session) -> None:
        """Show an app: owner, release, formation, domains, URLs."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}")
        session.emit(data, _print_info)

    @api_command(cli, "apps:destroy", app=True)
    @click.option("--confirm", default=None, metavar="APP", help="The app name, to confirm.")
    def destroy(session: Session, confirm: str | None) -> None:
        """Destroy an app and everything it runs (owner only)."""
        if confirm is None:
            if not sys.stdin.isatty():
                raise click.UsageError(f"destroying is permanent: pass --confirm {session.app}")
            confirm = click.prompt(f"Type the app name ({session.app}) to destroy it")
        if confirm != session.app:
            raise click.UsageError(f"--confirm {confirm!r} does not match the app {session.app!r}")
        data = session.client.call("DELETE", f"/apps/{seg(session.app)}")
        session.emit(data, f"Destroyed app {session.app}.")

    @api_command(cli, "git:remote")
    @click.argument("name", required=False)
    @click.option("-a", "--app", "app_opt", default=None, help="App name (same as NAME).")
    def git_remote(session: Session, name: str | None, app_opt: str | None) -> None:
        """Point this repository's `shipway` remote at an app."""
        app = context.resolve_app(name or app_opt)
        if not context.in_git_repo():
            raise click.UsageError("not inside a git repository")
        data = session.client.call("GET", f"/apps/{seg(app)}")
        url = data["urls"]["git_http"]
        action = context.set_git_remote(url)
        session.emit({"app": app, "remote": context.REMOTE, "url": url, "action": action},
                     f"Git remote '{context.REMOTE}' {action}: {url}")


def _print_info(d: dict[str, Any]) -> None:
    release = d.get("release")
    pairs({
        "name": d["name"],
        "owner": d["owner"],
        "role": d["role"],
        "release": (f"v{release['version']} ({release['status']}) {release['description']}"
                    if release else "(none yet: git push to deploy)"),
        "formation": ", ".join(f"{k}={v}" for k, v in sorted(d.get("formation", {}).items()))
                     or "(none)",
        "replica size": describe_size(d["replica_size"]) if d.get("replica_size") else "",
        "domains": ", ".join(d.get("domains") or []) or "(none)",
        "git (http)": d["urls"]["git_http"],
        "git (ssh)": d["urls"]["git_ssh"],
        "web": d["urls"]["web"],
    })
