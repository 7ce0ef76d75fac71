"""`shipway run -- CMD` (Heroku's run) and `ps:migrate` (Gigalixir's): a
one-off container of the app's current release, its lines printed as they
come, its exit status the CLI's own (issue 18)."""
from __future__ import annotations

import shlex
import subprocess
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


def _terminal(session: Session, text: str, identity: str | None) -> int:
    """A one-off idle with its SSH server; COMMAND runs in it under `ssh -t`
    through the git gateway; the one-off is removed when the session ends."""
    from cli.ps import ssh_argv

    app = seg(session.app)
    info = session.client.call("GET", f"/apps/{app}")
    started = session.client.call("POST", f"/apps/{app}/run",
                                  {"command": text, "tty": True}, read_timeout=None)
    container = str(started["container_id"])
    try:
        argv = ssh_argv(info["urls"]["git_ssh"], session.app or "", container[:12], identity,
                        [text], interactive=True, host_key=info.get("ssh_host_key"))
        return subprocess.run(argv).returncode
    finally:
        try:
            session.client.call("DELETE", f"/apps/{app}/run/{container}")
        except Exception:  # noqa: BLE001 (its timeout removes it anyway)
            pass


def register(cli: click.Group) -> None:
    @api_command(cli, "run", app=True)
    @click.option("-d", "--detach", is_flag=True,
                  help="Return at once; the output goes to the app's logs.")
    @click.option("-i", "--identity", default=None, type=click.Path(dir_okay=False),
                  help="Your SSH private key, for a terminal session (default: ssh's choice).")
    @click.argument("command", nargs=-1, required=True)
    def run(session: Session, detach: bool, identity: str | None,
            command: tuple[str, ...]) -> None:
        """Run COMMAND in a one-off container of the current release
        (`shipway run -- CMD ARGS`); exits with its status. From a terminal
        it gets a TTY (over SSH through the git SSH port, as ps:ssh)."""
        text = command[0] if len(command) == 1 else shlex.join(command)
        if not detach and not session.as_json and sys.stdin.isatty() and sys.stdout.isatty():
            sys.exit(_terminal(session, text, identity))
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
