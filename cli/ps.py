"""ps, ps:scale, ps:restart."""
from __future__ import annotations

import click

from cli.client import seg
from cli.session import Session, api_command, table


def register(cli: click.Group) -> None:
    @api_command(cli, "ps", app=True)
    def ps(session: Session) -> None:
        """Show the formation and the running replicas."""
        data = session.client.call("GET", f"/apps/{seg(session.app)}/ps")

        def human(d: dict) -> None:
            click.echo("formation: " + (", ".join(f"{k}={v}" for k, v in
                                                  sorted(d["formation"].items())) or "(none)"))
            table([(f"v{r['version']}", r["process_type"], r["state"], r["container_id"][:12],
                    r.get("host_port") or "", r.get("started_at") or "") for r in d["replicas"]],
                  ["release", "type", "state", "container", "port", "started"])

        session.emit(data, human)

    @api_command(cli, "ps:scale", app=True)
    @click.option("-r", "--replicas", type=click.IntRange(min=0), default=None,
                  help="Number of web replicas.")
    @click.argument("counts", nargs=-1, metavar="[TYPE=N]...")
    def scale(session: Session, replicas: int | None, counts: tuple[str, ...]) -> None:
        """Scale process types: --replicas N (web) or web=N worker=M."""
        formation: dict[str, int] = {}
        if replicas is not None:
            formation["web"] = replicas
        for item in counts:
            name, sep, value = item.partition("=")
            if not sep or not name or not value.isdigit():
                raise click.UsageError(f"expected TYPE=N (N a whole number), got {item!r}")
            formation[name] = int(value)
        if not formation:
            raise click.UsageError("nothing to scale: pass --replicas N or TYPE=N")
        data = session.client.call("PUT", f"/apps/{seg(session.app)}/formation", formation,
                                   progress=session.show_progress)
        session.emit(data, f"Scaled {session.app}: " + ", ".join(
            f"{k}={v}" for k, v in sorted(data["formation"].items())))

    @api_command(cli, "ps:restart", app=True)
    def restart(session: Session) -> None:
        """Replace every replica of the current release."""
        data = session.client.call("POST", f"/apps/{seg(session.app)}/restart",
                                   progress=session.show_progress)
        session.emit(data, f"Restarted {session.app}.")
