"""config, config:set K=V..., config:unset K..."""
from __future__ import annotations

from typing import Any

import click

from cli.client import seg
from cli.session import Session, api_command, table


def _release_note(data: dict[str, Any]) -> str:
    release = data.get("release")
    if not release:
        return "No release yet: the change applies to the next deploy."
    return f"Release v{release['version']}: {release['status']}."


def register(cli: click.Group) -> None:
    @api_command(cli, "config", app=True)
    def config(session: Session) -> None:
        """Show the app's config vars."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/config")
        session.emit(data, lambda d: table(sorted(d["config"].items()), ["name", "value"]))

    @api_command(cli, "config:set", app=True)
    @click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
    def config_set(session: Session, assignments: tuple[str, ...]) -> None:
        """Set config vars (deploys a new release when the app has one)."""
        values: dict[str, str] = {}
        for item in assignments:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise click.UsageError(f"expected KEY=VALUE, got {item!r}")
            values[key] = value
        data = session.client.call("PATCH", f"/apps/{seg(session.app)}/config", values,
                                   progress=session.show_progress)
        session.emit(data, f"Set {', '.join(values)} on {session.app}. {_release_note(data)}")

    @api_command(cli, "config:unset", app=True)
    @click.argument("keys", nargs=-1, required=True, metavar="KEY...")
    def config_unset(session: Session, keys: tuple[str, ...]) -> None:
        """Remove config vars (deploys a new release when the app has one)."""
        data = session.client.call("DELETE", f"/apps/{seg(session.app)}/config",
                                   {"keys": list(keys)},
                                   progress=session.show_progress)
        session.emit(data, f"Unset {', '.join(keys)} on {session.app}. {_release_note(data)}")
