"""Entry point of the `shipway` console script."""
from __future__ import annotations

import click

from cli import access, account, apps, config_cmd, domains, logs, ps, releases, server_cmd
from cli import maintenance  # issue 16: maintenance:on|off, canary:set|unset
from cli import activity, webhooks  # issue 18: apps:activity, webhooks[:add|:remove]
from cli import run  # issue 18 items 1-2 (cli/run.py): run -- CMD, ps:migrate
from cli import observer  # issue 17 item 5: ps:observer
from cli import certs  # issue 16 item 3: certs, certs:auto:refresh


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="SHIPWAY_URL", default=None,
              help="Server URL [SHIPWAY_URL, http://127.0.0.1:5000].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-a", "--app", "app_name", default=None, help="App name for app commands.")
def cli(url: str | None, as_json: bool, app_name: str | None) -> None:
    """Shipway: git push to deploy."""


server_cmd.register(cli)
for module in (account, apps, config_cmd, releases, ps, logs, domains, access, maintenance,
               activity, webhooks, run, observer, certs):
    module.register(cli)

# issue 18 item 8: Gigalixir's names, typed from habit; each is the same
# command as its target. `migrate` only once a `ps:migrate` exists.
ALIASES = {"apps:create": "create", "restart": "ps:restart", "scale": "ps:scale",
           "rollback": "releases:rollback", "ssh": "ps:ssh", "migrate": "ps:migrate"}
for alias, target in ALIASES.items():
    if target in cli.commands and alias not in cli.commands:
        cli.add_command(cli.commands[target], alias)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="shipway")


if __name__ == "__main__":
    main()
