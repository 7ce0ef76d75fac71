"""One-off runs over the API (issue 18): `shipway run -- CMD` and
`ps:migrate`. A one-off is a container of the app's current release with
its config and limits (runner/oneoff.py); its lines stream as NDJSON like a
deploy's, and the final answer carries its exit status."""
from __future__ import annotations

from typing import Any

from controller.api_views import Call, output_collector
from controller.deploys import current_spec
from controller.errors import BadRequest, Conflict, NotFound

MAX_COMMAND = 8192
MIGRATE_VAR = "MIGRATE_COMMAND"
# Gigalixir's convention for an Elixir release: `bin/APP eval "<App>.Release.migrate"`,
# the release and its module found in the slug (my_app -> MyApp).
ELIXIR_MIGRATE = (
    'rel=$(compgen -G "/app/_build/*/rel/*/bin" | head -n 1); '
    'if [ -z "$rel" ]; then echo "no Elixir release in this slug: set the config var '
    'MIGRATE_COMMAND to the command that runs your migrations" >&2; exit 1; fi; '
    'name=$(basename "$(dirname "$rel")"); '
    "mod=$(printf %s \"$name\" | sed -E 's/(^|_)([a-z0-9])/\\U\\2/g'); "
    'echo "Running $mod.Release.migrate"; '
    'exec "$rel/$name" eval "$mod.Release.migrate"')


def _spec(call: Call) -> Any:
    app = call.controller.get_app(call.me, call.params["app"], "write")
    spec = current_spec(call.services.settings, call.controller, app)
    if spec is None:
        raise Conflict(f"{app.name} has no release yet: push first")
    return app, spec


def _run(call: Call, command: str, kind: str, detach: bool) -> dict[str, Any]:
    app, spec = _spec(call)
    settings = call.services.settings
    logs = call.services.logs  # the one-off's lines join the app's logs: app[run.N]
    if detach:
        output = logs.oneoff_writer(app.name, kind) if logs is not None else (lambda _l: None)
        call.services.runner.run_oneoff(spec, command, output, settings.run_timeout,
                                        kind=kind, detach=True)
        return {"exit_code": None, "detached": True, "version": spec.version, "log": []}
    lines, output = output_collector(call.progress)
    if logs is not None:
        output = logs.oneoff_writer(app.name, kind, also=output)
    code = call.services.runner.run_oneoff(spec, command, output, settings.run_timeout,
                                           kind=kind)
    return {"exit_code": code, "detached": False, "version": spec.version, "log": lines}


def run(call: Call) -> dict[str, Any]:
    """POST /apps/{app}/run {"command": "...", "detach": false}."""
    # Who may run comes first: a stranger learns nothing from the body check.
    call.controller.get_app(call.me, call.params["app"], "write")
    body = call.body or {}
    command = body.get("command")
    if not isinstance(command, str) or not command.strip():
        raise BadRequest("field 'command' must be a non-empty string")
    if len(command) > MAX_COMMAND or "\x00" in command:
        raise BadRequest(f"field 'command' must be under {MAX_COMMAND} characters, no NUL")
    detach = body.get("detach", False)
    if not isinstance(detach, bool):
        raise BadRequest("field 'detach' must be true or false")
    tty = body.get("tty", False)
    if not isinstance(tty, bool):
        raise BadRequest("field 'tty' must be true or false")
    if tty:
        return _shell(call)
    return _run(call, command, "run", detach)


def _shell(call: Call) -> dict[str, Any]:
    """A terminal one-off: the CLI runs the command in it over SSH through
    the git gateway (`ssh -t`, as ps:ssh) and then stops it (below)."""
    _app, spec = _spec(call)
    container = call.services.runner.oneoff_shell(spec, call.services.settings.run_timeout)
    return {"container_id": container, "tty": True, "version": spec.version}


def stop(call: Call) -> dict[str, Any]:
    """DELETE /apps/{app}/run/{container}: the terminal session ended."""
    app = call.controller.get_app(call.me, call.params["app"], "write")
    container = call.params["container"]
    if not (container.isascii() and container.isalnum() and len(container) == 64):
        raise BadRequest("a one-off is named by its full container id")
    if not call.services.runner.stop_oneoff(app.name, container):
        raise NotFound(f"no one-off {container[:12]} of {app.name}")
    return {"ok": True}


def migrate(call: Call) -> dict[str, Any]:
    """POST /apps/{app}/migrate: MIGRATE_COMMAND, else the Elixir convention."""
    _app, spec = _spec(call)
    command = spec.env.get(MIGRATE_VAR) or ELIXIR_MIGRATE
    return _run(call, command, "migrate", False)
