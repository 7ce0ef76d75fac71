"""webhooks, webhooks:add URL, webhooks:remove ID|URL (issue 18 item 7)."""
from __future__ import annotations

import click

from cli.client import seg
from cli.session import Session, api_command, table


def register(cli: click.Group) -> None:
    @api_command(cli, "webhooks", app=True)
    def webhooks(session: Session) -> None:
        """List the app's deploy webhooks."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/webhooks")
        session.emit(data, lambda d: table(
            [(w["id"], w["url"], w["created_by"], w["created_at"]) for w in d],
            ["id", "url", "by", "added"]))

    @api_command(cli, "webhooks:add", app=True)
    @click.argument("hook_url", metavar="URL")  # `url` is the server's (--url)
    def add(session: Session, hook_url: str) -> None:
        """POST a signed JSON message to URL on each release that succeeds or
        fails. The secret to check signatures with is shown once, now."""
        data = session.client.call("POST", f"/apps/{seg(session.app)}/webhooks", {"url": hook_url})
        session.emit(data, (
            f"Added webhook {data['id']} to {session.app}: {data['url']}\n"
            f"Secret (shown only now): {data['secret']}\n"
            "Each POST has Shipway-Timestamp and Shipway-Signature: sha256=<hex>, the "
            "HMAC-SHA256 with the secret of '<timestamp>.<body>'."))

    @api_command(cli, "webhooks:remove", app=True)
    @click.argument("webhook")
    def remove(session: Session, webhook: str) -> None:
        """Remove a webhook by its id or its URL."""
        which = webhook.strip()
        if not which.isdigit():  # a URL: find its id
            hooks = session.client.call("GET", f"/apps/{seg(session.app)}/webhooks")
            ids = [w["id"] for w in hooks if w["url"] == which]
            if not ids:
                raise click.ClickException(f"{session.app} has no webhook {which}")
            which = str(ids[0])
        data = session.client.call("DELETE", f"/apps/{seg(session.app)}/webhooks/{which}")
        session.emit(data, f"Removed webhook {data['url']} from {session.app}.")
