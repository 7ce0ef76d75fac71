"""domains, domains:add HOSTNAME, domains:remove HOSTNAME."""
from __future__ import annotations

import click

from cli.client import seg
from cli.session import Session, api_command, table


def register(cli: click.Group) -> None:
    @api_command(cli, "domains", app=True)
    def domains(session: Session) -> None:
        """List the app's custom domains."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/domains")
        session.emit(data, lambda d: table([(x["hostname"], x["created_at"]) for x in d],
                                           ["hostname", "added"]))

    @api_command(cli, "domains:add", app=True)
    @click.argument("hostname")
    def add(session: Session, hostname: str) -> None:
        """Serve the app at HOSTNAME too."""
        data = session.client.call("POST", f"/apps/{seg(session.app)}/domains",
                                   {"hostname": hostname})
        session.emit(data, f"Added {data['hostname']} to {session.app}.")

    @api_command(cli, "domains:remove", app=True)
    @click.argument("hostname")
    def remove(session: Session, hostname: str) -> None:
        """Stop serving the app at HOSTNAME."""
        data = session.client.call("DELETE", f"/apps/{seg(session.app)}/domains/{seg(hostname)}")
        session.emit(data, f"Removed {hostname} from {session.app}.")
