"""releases, releases:rollback [VERSION]."""
from __future__ import annotations

import click

from cli.client import seg
from cli.session import Session, api_command, table


def register(cli: click.Group) -> None:
    @api_command(cli, "releases", app=True)
    def releases(session: Session) -> None:
        """List the app's releases, newest first."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/releases")
        session.emit(data, lambda d: table(
            [(f"v{r['version']}", r["status"], (r.get("commit") or "")[:10],
              r["description"], r["created_by"], r["created_at"]) for r in d],
            ["version", "status", "commit", "description", "by", "created"]))

    @api_command(cli, "releases:rollback", app=True)
    @click.argument("version", required=False)
    def rollback(session: Session, version: str | None) -> None:
        """Roll back to VERSION (default: the release before the current one)."""
        body = {}
        if version is not None:
            try:
                body["version"] = int(version.lstrip("vV"))
            except ValueError:
                raise click.UsageError(f"VERSION must be a release number like 3 or v3, "
                                       f"got {version!r}") from None
        data = session.client.call("POST", f"/apps/{seg(session.app)}/releases/rollback",
                                   body, progress=session.show_progress)
        release = data["release"]
        session.emit(data, f"Rolled back {session.app}: release v{release['version']} "
                           f"({release['description']}) is {release['status']}.")
