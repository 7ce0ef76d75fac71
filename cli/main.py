"""Entry point of the `shipway` console script."""
from __future__ import annotations

import click

from cli import server_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Shipway: git push to deploy."""


server_cmd.register(cli)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="shipway")
