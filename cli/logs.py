"""logs [-n N] [-f]."""
from __future__ import annotations

import click

from cli.client import seg
from cli.session import Session, api_command


def register(cli: click.Group) -> None:
    @api_command(cli, "logs", app=True)
    @click.option("-n", "--num", "lines", type=click.IntRange(1, 1500), default=100,
                  show_default=True, help="How many recent lines to show.")
    @click.option("-f", "--follow", "--tail", is_flag=True,
                  help="Keep streaming new lines until interrupted.")
    def logs(session: Session, lines: int, follow: bool) -> None:
        """Show the app's recent log lines: its replicas, builds and deploys."""
        path = f"/apps/{seg(session.app)}/logs?lines={lines}"
        if follow:
            try:
                session.client.follow(path + "&follow=true", click.echo)
            except KeyboardInterrupt:
                pass
            return
        data = session.client.call("GET", path)
        session.emit(data, lambda d: [click.echo(line) for line in d["lines"]])
