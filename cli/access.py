"""access, access:add EMAIL, access:remove EMAIL (collaborators)."""
from __future__ import annotations

import click

from cli.client import seg
from cli.session import Session, api_command, table


def register(cli: click.Group) -> None:
    @api_command(cli, "access", app=True)
    def access(session: Session) -> None:
        """List the app's collaborators."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/collaborators")
        session.emit(data, lambda d: table([(x["email"],) for x in d], ["collaborator"]))

    @api_command(cli, "access:add", app=True)
    @click.argument("email")
    def add(session: Session, email: str) -> None:
        """Let EMAIL push, deploy and configure the app."""
        data = session.client.call("POST", f"/apps/{seg(session.app)}/collaborators",
                                   {"email": email})
        session.emit(data, f"{data['email']} can now push to {session.app}.")

    @api_command(cli, "access:remove", app=True)
    @click.argument("email")
    def remove(session: Session, email: str) -> None:
        """Take EMAIL's access to the app away."""
        data = session.client.call("DELETE",
                                   f"/apps/{seg(session.app)}/collaborators/{seg(email)}")
        session.emit(data, f"Removed {email} from {session.app}.")
