"""`shipway server`: the command that runs the platform on this machine (and
its maintenance subcommands). It lives in the composition root; the `shipway`
console script (cli/main.py) registers it, and `python -m server` runs it
alone."""
from __future__ import annotations

import json

import click


def _settings(ctx_params: dict, config_file: str | None):
    from core.settings import load_settings

    return load_settings(ctx_params, config_file=config_file)


@click.group("server", invoke_without_command=True)
@click.option("--data-dir", default=None, help="State directory [SHIPWAY_DATA_DIR, ~/.shipway].")
@click.option("--http-port", type=int, default=None, help="API and git smart-HTTP port [5000].")
@click.option("--ssh-port", type=int, default=None, help="git over SSH port [2222].")
@click.option("--router-port", type=int, default=None, help="router (HTTP proxy) port [8080].")
@click.option("--base-domain", default=None, help="Apps are served at APP.<base domain> [localhost].")
# --- issue 16: TLS (apps by SNI on the https port; the API and git over HTTPS)
@click.option("--https-port", type=int, default=None, help="router HTTPS (TLS by SNI) port [8443].")
@click.option("--tls-cert", default=None, help="PEM chain: serve the API and git over HTTPS.")
@click.option("--tls-key", default=None, help="PEM private key of --tls-cert.")
@click.option("--public-host", default=None, help="Host name in git remotes and URLs [127.0.0.1].")
@click.option("--database-url", default=None, help="postgresql://... (default: SQLite in the data dir).")
@click.option("--instance", default=None,
              help="Label of this server's containers [SHIPWAY_INSTANCE; kept in the data dir].")
@click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="YAML settings file [SHIPWAY_CONFIG].")
@click.option("--print-config", is_flag=True, help="Print the settings in force and exit.")
@click.pass_context
def server(ctx: click.Context, config_file: str | None, print_config: bool, **params) -> None:
    """Run the Shipway platform (API, git, builds, runner, router)."""
    ctx.ensure_object(dict)
    try:
        settings, origin = _settings(params, config_file)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc))
    ctx.obj["settings"] = settings
    if ctx.invoked_subcommand is not None:
        return
    if print_config:
        import attrs

        shown = attrs.asdict(settings, value_serializer=lambda _i, _a, v: str(v) if hasattr(v, "parts") else v)
        for secret in ("master_key", "api_key_secret", "s3_secret_access_key"):
            if shown.get(secret):
                shown[secret] = "***"
        click.echo(json.dumps({"settings": shown, "origin": origin}, indent=2, default=str))
        return
    from server.main import run

    run(settings)


@server.command("rotate-key")
@click.pass_context
def rotate_key(ctx: click.Context) -> None:
    """Re-encrypt all config under a new master key."""
    from controller.store import open_controller

    controller = open_controller(ctx.obj["settings"])
    count = controller.rotate_master_key()
    click.echo(f"Re-encrypted {count} values under the new key.")


@server.command("stop-router")
@click.pass_context
def stop_router(ctx: click.Context) -> None:
    """Stop the router's proxy, which a stopped server leaves serving the
    apps: every app goes offline until the server starts again."""
    import socket

    from server.main import make_router

    settings = ctx.obj["settings"]
    # Asked where this machine's server listens, not at its public name
    # (which may not lead back here, or go through a proxy).
    host = settings.bind_host if settings.bind_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    try:
        socket.create_connection((host, settings.http_port), timeout=3).close()
        running = True
    except OSError:
        running = False
    if running:  # its supervision would start the proxy again at once
        raise click.ClickException(
            f"shipway server is running (port {settings.http_port}): stop it first")
    router = make_router(settings)
    pid = router.pid()
    if pid is None:
        router.stop()  # what a proxy that died left behind (its sockets' directory)
        click.echo("The router is not running.")
        return
    router.stop()
    click.echo(f"Stopped the router ({settings.router_proxy} {pid}).")
