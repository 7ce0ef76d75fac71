"""`shipway run -- CMD` (Heroku's run) and `ps:migrate` (Gigalixir's): a
one-off container of the app's current release, its lines printed as they
come, its exit status the CLI's own (issue 18)."""
from __future__ import annotations

import shlex
import sys

import click

from cli.client import seg
from cli.session import Session, api_command


def _finish(session: Session, data: dict, detached_text: str) -> None:
    if data.get("detached"):
        session.emit(data, detached_text)
        return
    if session.as_json:
        session.emit(data)
    code = data.get("exit_code")
    sys.exit(code if isinstance(code, int) and 0 <= code < 256 else 1)


def _line(line: str) -> None:
    """A one-off's own output goes to stdout, as it would run locally."""
    click.echo(line)


def register(cli: click.Group) -> None:
    @api_command(cli, "run", app=True)
    @click.option("-d", "--detach", is_flag=True,
                  help="Return at once; the output goes to the app's logs.")
    @click.argument("command", nargs=-1, required=True)
    def run(session: Session, detach: bool, command: tuple[str, ...]) -> None:
        """Run COMMAND in a one-off container of the current release
        (`shipway run -- CMD ARGS`); exits with its status."""
        text = command[0] if len(command) == 1 else shlex.join(command)
        data = session.client.call("POST", f"/apps/{seg(session.app)}/run",
                                   {"command": text, "detach": detach},
                                   progress=None if detach or session.as_json else _line,
                                   read_timeout=None)
        _finish(session, data, f"Running `{text}` detached; see `shipway logs`.")

    @api_command(cli, "ps:migrate", app=True)
    def migrate(session: Session) -> None:
        """Run the app's migrations in a one-off container (config var
        MIGRATE_COMMAND, else an Elixir release's <App>.Release.migrate)."""
        data = session.client.call("POST", f"/apps/{seg(session.app)}/migrate",
                                   progress=None if session.as_json else _line,
                                   read_timeout=None)
        _finish(session, data, "")
