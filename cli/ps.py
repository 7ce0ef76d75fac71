"""ps, ps:scale, ps:restart, ps:ssh, ps:run, ps:remote_console."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

from cli.client import seg
from cli.session import Session, api_command, table


class SizeParam(click.ParamType):
    """A replica size: a positive number of GiB, or "default"."""

    name = "SIZE"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, float) or value == "default":
            return value
        try:
            size = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of GiB (like 0.5) or 'default'", param, ctx)
        if not size > 0:
            self.fail(f"{value!r} is not a positive number of GiB", param, ctx)
        return size


def describe_size(size: dict) -> str:
    """`0.5 (512 MiB, 0.5 CPU)`, or `default (512 MiB, 1 CPU)`."""
    name = "default" if size["size"] is None else f"{size['size']:g}"
    memory = f"{size['memory_mb']} MiB" if size["memory_mb"] else "no memory limit"
    return f"{name} ({memory}, {size['cpus']:g} CPU)"


def describe_uptime(seconds: int | None) -> str:
    """`42s`, `5m 3s`, `2h 5m`, `3d 4h` (as `heroku ps` counts), or ``."""
    if seconds is None:
        return ""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{n}{unit}" for n, unit in parts[:2])


def register(cli: click.Group) -> None:
    @api_command(cli, "ps", app=True)
    def ps(session: Session) -> None:
        """Show the formation and the running replicas."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/ps")

        def human(d: dict) -> None:
            click.echo("formation: " + (", ".join(f"{k}={v}" for k, v in
                                                  sorted(d["formation"].items())) or "(none)"))
            click.echo("replica size: " + describe_size(d["replica_size"]))
            table([(f"v{r['version']}", r["process_type"], r["state"], r["container_id"][:12],
                    r.get("host_port") or "", r.get("started_at") or "",
                    describe_uptime(r.get("uptime_seconds"))) for r in d["replicas"]],
                  ["release", "type", "state", "container", "port", "started", "up"])
            if d.get("oneoffs"):  # issue 18: `shipway run` and release commands running now
                click.echo("one-off runs:")
                table([(f"v{r['version']}", r["process_type"], r["state"], r["container_id"][:12],
                        r.get("started_at") or "", describe_uptime(r.get("uptime_seconds")))
                       for r in d["oneoffs"]],
                      ["release", "kind", "state", "container", "started", "up"])

        session.emit(data, human)

    @api_command(cli, "ps:scale", app=True)
    @click.option("-r", "--replicas", type=click.IntRange(min=0), default=None,
                  help="Number of web replicas.")
    @click.option("-s", "--size", "size", type=SizeParam(), default=None,
                  help="Size of each replica: GiB of memory and CPUs (e.g. 0.5), or "
                       "'default' for the server's. Replaces the replicas (zero downtime).")
    @click.argument("counts", nargs=-1, metavar="[TYPE=N]...")
    def scale(session: Session, replicas: int | None, size: float | str | None,
              counts: tuple[str, ...]) -> None:
        """Scale process types (--replicas N for web, or web=N worker=M) and
        size replicas (--size S)."""
        formation: dict[str, int] = {}
        if replicas is not None:
            formation["web"] = replicas
        for item in counts:
            name, sep, value = item.partition("=")
            if not sep or not name or not (value.isascii() and value.isdigit()):
                raise click.UsageError(f"expected TYPE=N (N a whole number), got {item!r}")
            formation[name] = int(value)
        if not formation and size is None:
            raise click.UsageError("nothing to scale: pass --replicas N, TYPE=N or --size S")
        result: dict = {}
        said = []
        if size is not None:  # first: the replicas added below are then of the new size
            sized = session.client.call(
                "PUT", f"/apps/{seg(session.app)}/size",
                {"size": None if size == "default" else size}, progress=session.show_progress)
            result["replica_size"] = sized["replica_size"]
            said.append("replica size " + describe_size(sized["replica_size"]))
        if formation:
            data = session.client.call("PUT", f"/apps/{seg(session.app)}/formation", formation,
                                       progress=session.show_progress)
            result["formation"] = data["formation"]
            said.append(", ".join(f"{k}={v}" for k, v in sorted(data["formation"].items())))
        session.emit(result, f"Scaled {session.app}: " + "; ".join(said))

    @api_command(cli, "ps:restart", app=True)
    def restart(session: Session) -> None:
        """Replace every replica of the current release."""
        data = session.client.call("POST", f"/apps/{seg(session.app)}/restart",
                                   progress=session.show_progress)
        session.emit(data, f"Restarted {session.app}.")

    replica_option = click.option(
        "-r", "--replica", default=None,
        help="A replica's container id, or its start (see `ps`); default: the first web replica.")
    identity_option = click.option(
        "-i", "--identity", default=None, type=click.Path(dir_okay=False),
        help="Your SSH private key (default: ssh's own choice).")

    @api_command(cli, "ps:ssh", app=True)
    @replica_option
    @identity_option
    @click.argument("command", nargs=-1)
    def ssh(session: Session, replica: str | None, identity: str | None,
            command: tuple[str, ...]) -> None:
        """Open a shell in a running replica, or run COMMAND there, over SSH
        through the server's git SSH port (with the keys of `account:ssh_keys`)."""
        _exec_ssh(session, replica, identity, list(command), tty=not command)

    @api_command(cli, "ps:run", app=True)
    @replica_option
    @identity_option
    @click.argument("command", nargs=-1, required=True)
    def run(session: Session, replica: str | None, identity: str | None,
            command: tuple[str, ...]) -> None:
        """Run COMMAND in a running replica, with the app's environment
        (e.g. `shipway ps:run -- bin/migrate`); its exit status is ours."""
        _exec_ssh(session, replica, identity, list(command), tty=False)

    @api_command(cli, "ps:remote_console", app=True)
    @replica_option
    @identity_option
    def remote_console(session: Session, replica: str | None, identity: str | None) -> None:
        """An IEx shell attached to the running Elixir release (`bin/APP
        remote`), through ps:ssh. Leave it with Ctrl-C twice or Ctrl-\\;
        `System.halt()` here would stop the app itself."""
        _exec_ssh(session, replica, identity, [REMOTE_CONSOLE], tty=True)


# The release's own `remote` command, found in the slug (the release name is
# the app's, which only the buildpack knew); RELEASE_NODE, RELEASE_COOKIE and
# RELEASE_DISTRIBUTION come from the replica's environment.
REMOTE_CONSOLE = ('for bin in /app/_build/*/rel/*/bin/*; do case "$bin" in *.bat) ;; '
                  '*) [ -f "$bin" ] && [ -x "$bin" ] && exec "$bin" remote ;; esac; done; '
                  'echo "shipway: no Elixir release (mix release) in this app" >&2; exit 1')


def _exec_ssh(session: Session, replica: str | None, identity: str | None,
              command: list[str], tty: bool) -> None:
    info = session.client.call("GET", f"/apps/{seg(session.app)}")
    os.execvp("ssh", ssh_argv(info["urls"]["git_ssh"], session.app or "", replica, identity,
                              command, interactive=tty and sys.stdin.isatty(),
                              host_key=info.get("ssh_host_key")))


def ssh_argv(git_ssh_url: str, app: str, replica: str | None, identity: str | None,
             command: list[str], interactive: bool, host_key: str | None = None) -> list[str]:
    """`ssh` to the replica's sshd as `app`, through the git SSH server (which
    checks access and carries the bytes). The gateway's host key is recorded
    on first use and checked from then on (~/.shipway/known_hosts). Every
    replica of an app presents the app's own host key, which the API gives
    (`host_key`): it is written where this ssh alone reads it and required,
    so the session cannot end up in anything but a replica of the app. A
    server too old to give one leaves that hop unchecked."""
    gateway = urlsplit(git_ssh_url)
    key = ["-i", identity, "-o", "IdentitiesOnly=yes"] if identity else []
    known = Path(os.path.expanduser("~/.shipway/known_hosts"))
    known.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    proxy = shlex.join(["ssh", "-p", str(gateway.port or 22), *key,
                        "-o", "StrictHostKeyChecking=accept-new",
                        "-o", f"UserKnownHostsFile={known}", "-W", "%h:%p",
                        f"git@{gateway.hostname}"])
    target = f"{replica}.{app}" if replica else app
    if host_key:
        alias = f"{app}.{gateway.port or 22}.replicas.{gateway.hostname}"
        pinned = known.parent / "replica_host_keys" / alias
        pinned.parent.mkdir(mode=0o700, exist_ok=True)
        pinned.write_text(f"{alias} {host_key.strip()}\n")
        replica_check = ["-o", f"HostKeyAlias={alias}", "-o", f"UserKnownHostsFile={pinned}",
                         "-o", "StrictHostKeyChecking=yes"]
    else:
        replica_check = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    return ["ssh", *key, "-o", f"ProxyCommand={proxy}", *replica_check, "-o", "LogLevel=ERROR",
            *(["-t"] if interactive else []), f"app@{target}",
            *([" ".join(command)] if command else [])]  # as ssh joins them
