"""The options every API command shares (`--url`, `--json`, `-a`) and the
session they resolve to, plus output helpers (tables for people, exact JSON
for scripts)."""
from __future__ import annotations

import functools
import json
from typing import Any, Callable, Sequence

import attrs
import click

from cli import context
from cli.client import Client


@attrs.frozen
class Session:
    url: str
    as_json: bool
    client: Client
    app: str | None = None

    def emit(self, data: Any, human: Callable[[Any], None] | str | None = None) -> None:
        """Print `data` as JSON with --json, else `human` (text or printer)."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=True))
        elif callable(human):
            human(data)
        elif human is not None:
            click.echo(human)

    @staticmethod
    def show_progress(line: str) -> None:
        """A deploy's progress line, as the server streams it (on stderr, so
        --json output on stdout stays exact)."""
        click.echo(f"  {line}", err=True)


def api_command(group: click.Group, name: str, app: bool = False) -> Callable:
    """Register a command with --url, --json (and -a/--app) that receives a
    `session` argument instead of those options."""

    def wrap(fn: Callable) -> click.Command:
        @functools.wraps(fn)
        def run(url: str | None, as_json: bool, **kw: Any) -> Any:
            root = click.get_current_context().find_root().params
            final = context.normalize_url(url or root.get("url") or context.DEFAULT_URL)
            chosen_app = None
            if app:
                chosen_app = context.resolve_app(kw.pop("app_name") or root.get("app_name"))
            _email, key = context.credentials(final)
            session = Session(url=final, as_json=as_json or bool(root.get("as_json")),
                              client=Client(final, key), app=chosen_app)
            return fn(session, **kw)

        params = [
            click.option("--url", default=None, help="Server URL [SHIPWAY_URL, http://127.0.0.1:5000]."),
            click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
        ]
        if app:
            params.append(click.option("-a", "--app", "app_name", default=None,
                                       envvar="SHIPWAY_APP",
                                       help="App name (default: the shipway git remote)."))
        cmd = run
        for p in params:
            cmd = p(cmd)
        return group.command(name)(cmd)

    return wrap


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """A plain aligned table; '(none)' when empty."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[str(h).upper() for h in headers]] + [["" if c is None else str(c) for c in r]
                                                   for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def pairs(data: dict[str, Any]) -> None:
    """`key: value` lines, aligned."""
    width = max((len(k) for k in data), default=0)
    for k, v in data.items():
        click.echo(f"{k + ':':<{width + 1}} {v}")
