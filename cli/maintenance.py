"""maintenance, maintenance:on, maintenance:off, canary:set, canary:unset
(Gigalixir's verbs; issue 16, item 5)."""
from __future__ import annotations

from typing import Any

import click

from cli.client import seg
from cli.session import Session, api_command


def _describe(data: dict[str, Any]) -> str:
    lines = [f"{data['app']}: maintenance mode is {'on' if data['maintenance'] else 'off'}."]
    canary = data.get("canary")
    if canary:
        lines.append(f"{canary['weight']}% of its requests go to {canary['app']} (canary).")
    else:
        lines.append("No canary.")
    return "\n".join(lines)


def register(cli: click.Group) -> None:
    @api_command(cli, "maintenance", app=True)
    def status(session: Session) -> None:
        """Show the app's maintenance mode and canary."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/maintenance")
        session.emit(data, _describe(data))

    @api_command(cli, "maintenance:on", app=True)
    def on(session: Session) -> None:
        """Answer every request with 503 and Retry-After (replicas keep running)."""
        data = session.client.call("PUT", f"/apps/{seg(session.app)}/maintenance",
                                   {"maintenance": True})
        session.emit(data, f"{session.app} is in maintenance mode: requests get 503.")

    @api_command(cli, "maintenance:off", app=True)
    def off(session: Session) -> None:
        """Serve the app again."""
        data = session.client.call("PUT", f"/apps/{seg(session.app)}/maintenance",
                                   {"maintenance": False})
        session.emit(data, f"{session.app} is served again.")

    @api_command(cli, "canary:set", app=True)
    @click.option("--canary", "canary", required=True, help="The app that gets the share.")
    @click.option("--weight", type=click.IntRange(0, 100), required=True,
                  help="Percent of the app's requests (0-100).")
    def canary_set(session: Session, canary: str, weight: int) -> None:
        """Send WEIGHT % of the app's requests to the replicas of CANARY."""
        data = session.client.call("PUT", f"/apps/{seg(session.app)}/canary",
                                   {"canary": canary, "weight": weight})
        session.emit(data, f"{weight}% of {session.app}'s requests now go to {canary}.")

    @api_command(cli, "canary:unset", app=True)
    def canary_unset(session: Session) -> None:
        """Send all of the app's requests to its own replicas again."""
        data = session.client.call("DELETE", f"/apps/{seg(session.app)}/canary")
        session.emit(data, f"{session.app} has no canary.")
