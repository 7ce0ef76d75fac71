"""logs [-n N] [-f] [--source S]; also registers drains (cli/drains.py)."""
from __future__ import annotations

from urllib.parse import quote

import click

from cli import drains
from cli.client import seg
from cli.session import Session, api_command


def register(cli: click.Group) -> None:
    drains.register(cli)

    @api_command(cli, "logs", app=True)
    @click.option("-n", "--num", "lines", type=click.IntRange(1, 1500), default=100,
                  show_default=True, help="How many recent lines to show.")
    @click.option("-f", "--follow", "--tail", is_flag=True,
                  help="Keep streaming new lines until interrupted.")
    @click.option("-s", "--source", "--dyno", "source", default=None,
                  help="Only one source: app, shipway, router, build, deploy, release, "
                       "a process type (web) or a process (web.3f2a1c).")
    def logs(session: Session, lines: int, follow: bool, source: str | None) -> None:
        """Show the app's recent log lines: its replicas, router, builds and deploys."""
        path = f"/apps/{seg(session.app)}/logs?lines={lines}"
        if source:
            path += f"&source={quote(source, safe='')}"
        if follow:
            try:
                session.client.follow(path + "&follow=true", click.echo)
            except KeyboardInterrupt:
                pass
            return
        data = session.client.call("GET", path)
        session.emit(data, lambda d: [click.echo(line) for line in d["lines"]])
