"""certs, certs:auto:refresh [--domain HOSTNAME] (Heroku's names; issue 16
item 3): each name the app is served under with its ACME certificate, and
trying them again now instead of after the retry backoff."""
from __future__ import annotations

from typing import Any

import click

from cli.client import seg
from cli.session import Session, api_command, table

_ACTIONS = {"renew": "renewal queued (the current certificate is served until then)",
            "retry": "issuance queued", "issue": "issuance queued"}


def _row(hostname: str, cert: dict[str, Any] | None) -> tuple[str, str, str, str]:
    if cert is None:
        return hostname, "off (no ACME)", "", ""
    return hostname, cert["status"], cert.get("not_after") or "", cert.get("error") or ""


def register(cli: click.Group) -> None:
    @api_command(cli, "certs", app=True)
    def certs(session: Session) -> None:
        """List the app's names with their certificate status, expiry and last error."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/certs")
        session.emit(data, lambda d: table(
            [_row(x["hostname"], x["certificate"]) for x in d],
            ["hostname", "certificate", "not after", "error"]))

    @api_command(cli, "certs:auto:refresh", app=True)
    @click.option("--domain", "hostname", default=None, metavar="HOSTNAME",
                  help="Only this name (default: every name of the app).")
    def refresh(session: Session, hostname: str | None) -> None:
        """Try the app's certificates again now: a failed one without waiting
        out its backoff, an issued one renewed."""
        body = {"hostname": hostname} if hostname else {}
        data = session.client.call("POST", f"/apps/{seg(session.app)}/certs/refresh", body)

        def human(d: dict[str, Any]) -> None:
            for item in d["queued"]:
                click.echo(f"{item['hostname']}: {_ACTIONS.get(item['action'], item['action'])}")
            click.echo(f"Follow it with `shipway certs -a {d['app']}`.")
        session.emit(data, human)
