"""releases, releases:info VERSION, releases:rollback [VERSION | -r VERSION]."""
from __future__ import annotations

from typing import Any

import click

from cli.client import seg
from cli.session import Session, api_command, pairs, table


def _version(text: str) -> int:
    """3 or v3, as `releases` shows them."""
    try:
        return int(text.strip().lstrip("vV"))
    except ValueError:
        raise click.UsageError(f"VERSION must be a release number like 3 or v3, "
                               f"got {text!r}") from None


def _show_release(data: dict[str, Any]) -> None:
    pairs({"version": f"v{data['version']}", "status": data["status"],
           "deploy": ("hot (upgraded in place)" if data.get("hot") else "restart")
           if data["status"] == "succeeded" else "",
           "by": data["created_by"], "created": data["created_at"],
           "description": data["description"], "commit": data.get("commit") or "",
           "slug": data.get("slug_id") if data.get("slug_id") is not None else ""})
    build = data.get("build")
    if build is None:
        click.echo("\n(no build: this release was made by a config change or a rollback)")
        return
    click.echo(f"\n=== build {build['id']} ({build['status']}, {build['ref']} "
               f"{build['commit'][:10]}, by {build['user']})")
    click.echo(build["output"].rstrip("\n"))


def register(cli: click.Group) -> None:
    @api_command(cli, "releases", app=True)
    def releases(session: Session) -> None:
        """List the app's releases, newest first."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/releases")
        session.emit(data, lambda d: table(
            [(f"v{r['version']}", r["status"], "hot" if r.get("hot") else "",
              (r.get("commit") or "")[:10], r["description"], r["created_by"],
              r["created_at"]) for r in d],
            ["version", "status", "deploy", "commit", "description", "by", "created"]))

    @api_command(cli, "releases:rollback", app=True)
    @click.argument("version", required=False)
    @click.option("-r", "--version", "option_version", default=None,
                  help="The release to roll back to (Gigalixir's -r).")
    def rollback(session: Session, version: str | None, option_version: str | None) -> None:
        """Roll back to VERSION (default: the release before the current one)."""
        if version is not None and option_version is not None and version != option_version:
            raise click.UsageError("give the version once: VERSION or -r VERSION")
        version = version if version is not None else option_version
        body = {}
        if version is not None:
            body["version"] = _version(version)
        data = session.client.call("POST", f"/apps/{seg(session.app)}/releases/rollback",
                                   body, progress=session.show_progress)
        release = data["release"]
        session.emit(data, f"Rolled back {session.app}: release v{release['version']} "
                           f"({release['description']}) is {release['status']}.")

    @api_command(cli, "releases:info", app=True)
    @click.argument("version")
    def info(session: Session, version: str) -> None:
        """Show release VERSION (3 or v3) and its push's build output."""
        data = session.client.call(
            "GET", f"/apps/{seg(session.app)}/releases/v{_version(version)}")
        session.emit(data, _show_release)
