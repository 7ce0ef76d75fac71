"""domains, domains:add HOSTNAME, domains:verify HOSTNAME, domains:remove HOSTNAME."""
from __future__ import annotations

from typing import Any

import click

from cli.client import seg
from cli.session import Session, api_command, table


def _challenge(domain: dict[str, Any]) -> str:
    """What to create in DNS for a name that waits for its proof."""
    c = domain.get("challenge")
    if domain.get("verified", True) or not c:
        return ""
    return (f"\nTo prove {domain['hostname']} is yours, create this DNS record, then run "
            f"`shipway domains:verify {domain['hostname']}`:\n"
            f"  {c['name']}  {c['type']}  \"{c['value']}\"\n"
            f"The app is not served at {domain['hostname']} until then.")


def register(cli: click.Group) -> None:
    @api_command(cli, "domains", app=True)
    def domains(session: Session) -> None:
        """List the app's custom domains."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/domains")
        session.emit(data, lambda d: table(
            [(x["hostname"], "yes" if x.get("verified", True) else "no (domains:verify)",
              x["created_at"]) for x in d], ["hostname", "verified", "added"]))

    @api_command(cli, "domains:add", app=True)
    @click.argument("hostname")
    def add(session: Session, hostname: str) -> None:
        """Serve the app at HOSTNAME too (once proven, where the server asks
        for a DNS proof)."""
        data = session.client.call("POST", f"/apps/{seg(session.app)}/domains",
                                   {"hostname": hostname})
        session.emit(data, f"Added {data['hostname']} to {session.app}.{_challenge(data)}")

    @api_command(cli, "domains:verify", app=True)
    @click.argument("hostname")
    def verify(session: Session, hostname: str) -> None:
        """Check HOSTNAME's DNS proof (its TXT record) and serve it once found."""
        data = session.client.call(
            "POST", f"/apps/{seg(session.app)}/domains/{seg(hostname)}/verify")
        session.emit(data, f"{data['hostname']} is verified: {session.app} is served there.")

    @api_command(cli, "domains:remove", app=True)
    @click.argument("hostname")
    def remove(session: Session, hostname: str) -> None:
        """Stop serving the app at HOSTNAME."""
        data = session.client.call("DELETE", f"/apps/{seg(session.app)}/domains/{seg(hostname)}")
        session.emit(data, f"Removed {hostname} from {session.app}.")
