"""`shipway server` (server/command.py, the composition root's own command)
and `shipway stack:build`: the commands that run the platform on this machine
rather than talk to it."""
from __future__ import annotations

import click

from server.command import server


@click.command("stack:build")
@click.option("--data-dir", default=None)
def stack_build(data_dir: str | None) -> None:
    """Build the stack image from Debian packages (debootstrap + docker import)."""
    from builder.stack import ensure_stack_image
    from builder.stack_ca import TrustError
    from core.settings import load_settings

    settings, _ = load_settings({"data_dir": data_dir})
    try:
        image = ensure_stack_image(settings, output=lambda line: click.echo(line))
    except TrustError as e:  # a bad SHIPWAY_EXTRA_CA: the operator's to fix
        raise click.ClickException(str(e)) from None
    click.echo(image)


def register(group: click.Group) -> None:
    group.add_command(server)
    group.add_command(stack_build)
