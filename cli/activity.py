"""apps:activity: who did what to the app and when (issue 18 item 5)."""
from __future__ import annotations

import click

from cli.client import seg
from cli.session import Session, api_command, table


def register(cli: click.Group) -> None:
    @api_command(cli, "apps:activity", app=True)
    @click.option("-n", "--num", "n", type=click.IntRange(1, 5000), default=50,
                  show_default=True, help="How many records, newest first.")
    def activity(session: Session, n: int) -> None:
        """List who did what to the app and when, newest first (config
        changes show the names changed, never the values)."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/activity?n={n}")
        session.emit(data, lambda d: table(
            [(a["created_at"], a["user"], a["action"], a["summary"]) for a in d],
            ["when", "who", "action", "what"]))
