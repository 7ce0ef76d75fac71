"""drains, drains:add URL, drains:remove URL|ID (registered by cli/logs.py)."""
from __future__ import annotations

import click

from cli.client import seg
from cli.session import Session, api_command, table


def register(cli: click.Group) -> None:
    @api_command(cli, "drains", app=True)
    def drains(session: Session) -> None:
        """List the app's log drains: what each sent, dropped, and its last error."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/drains")
        session.emit(data, lambda d: table(
            [(str(x["id"]), x["url"], str(x["sent"]), str(x["dropped"]),
              x.get("last_error") or "") for x in d],
            ["id", "url", "sent", "dropped", "last error"]))

    @api_command(cli, "drains:add", app=True)
    @click.argument("drain_url", metavar="URL")
    def add(session: Session, drain_url: str) -> None:
        """Send every log line of the app to URL: syslog://HOST:PORT (TCP),
        syslog+tls://HOST:PORT or https://HOST/PATH (batched POSTs)."""
        data = session.client.call("POST", f"/apps/{seg(session.app)}/drains", {"url": drain_url})
        session.emit(data, f"Added drain {data['id']} ({data['url']}) to {session.app}.")

    @api_command(cli, "drains:remove", app=True)
    @click.argument("drain")
    def remove(session: Session, drain: str) -> None:
        """Stop a drain, named by its id (see `drains`) or its URL."""
        data = session.client.call("DELETE", f"/apps/{seg(session.app)}/drains/{seg(drain)}")
        session.emit(data, f"Removed the drain from {session.app}.")
