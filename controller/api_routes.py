"""The route table of the REST API: the single list that the dispatcher
matches, the OpenAPI test compares with `openapi.yaml`, and the auth-matrix
tests iterate over. Paths are relative to `/api`."""
from __future__ import annotations

from typing import Any, Callable

import attrs

from controller import api_account as account
from controller import api_activity as activity  # issue 18 items 5 and 7
from controller import api_apps as apps
from controller import api_certs as certs  # issue 16 item 3: certs, certs:auto:refresh
from controller import api_run as oneoff  # issue 18 items 1 and 2: run, ps:migrate
from controller.api_views import Call

Handler = Callable[[Call], Any]


@attrs.frozen
class Route:
    method: str
    path: str  # "/apps/{app}/config"
    handler: Handler
    auth: bool = True
    body: bool = False  # parse the body as a JSON object
    status: int = 200  # on success
    # A deploy: with `Accept: application/x-ndjson` the progress streams.
    streams: bool = False

    @property
    def segments(self) -> list[str]:
        return self.path.strip("/").split("/")


def R(method: str, path: str, handler: Handler, **kw: Any) -> Route:  # noqa: N802
    return Route(method, path, handler, **kw)


ROUTES: list[Route] = [
    R("GET", "/health", account.health, auth=False),
    R("GET", "/openapi.json", account.openapi, auth=False),
    R("POST", "/users", account.signup, auth=False, body=True, status=201),
    R("POST", "/login", account.login, auth=False, body=True),
    R("GET", "/account", account.account),
    R("POST", "/account/api_key", account.reset_api_key),
    R("GET", "/account/ssh_keys", account.list_ssh_keys),
    R("POST", "/account/ssh_keys", account.add_ssh_key, body=True, status=201),
    R("DELETE", "/account/ssh_keys/{key}", account.remove_ssh_key),
    R("GET", "/apps", apps.list_apps),
    R("POST", "/apps", apps.create_app, body=True, status=201),
    R("GET", "/apps/{app}", apps.app_info),
    R("DELETE", "/apps/{app}", apps.destroy_app),
    R("GET", "/apps/{app}/config", apps.get_config),
    R("PATCH", "/apps/{app}/config", apps.set_config, body=True, streams=True),
    R("DELETE", "/apps/{app}/config", apps.unset_config, body=True, streams=True),
    R("GET", "/apps/{app}/releases", apps.list_releases),
    R("POST", "/apps/{app}/releases/rollback", apps.rollback, body=True, streams=True),
    R("GET", "/apps/{app}/ps", apps.ps),
    R("PUT", "/apps/{app}/formation", apps.scale, body=True, streams=True),
    R("PUT", "/apps/{app}/size", apps.resize, body=True, streams=True),
    R("POST", "/apps/{app}/restart", apps.restart, streams=True),
    R("POST", "/apps/{app}/run", oneoff.run, body=True, streams=True),  # issue 18
    R("POST", "/apps/{app}/migrate", oneoff.migrate, streams=True),  # issue 18
    R("DELETE", "/apps/{app}/run/{container}", oneoff.stop),  # issue 18: a TTY run ended
    R("GET", "/apps/{app}/domains", apps.list_domains),
    R("POST", "/apps/{app}/domains", apps.add_domain, body=True, status=201),
    R("DELETE", "/apps/{app}/domains/{hostname}", apps.remove_domain),
    R("POST", "/apps/{app}/domains/{hostname}/verify", apps.verify_domain),
    # issue 16 item 3: each routed name's certificate; try or renew it now
    R("GET", "/apps/{app}/certs", certs.list_certs),
    R("POST", "/apps/{app}/certs/refresh", certs.refresh_certs, body=True),
    R("GET", "/apps/{app}/collaborators", apps.list_collaborators),
    R("POST", "/apps/{app}/collaborators", apps.add_collaborator, body=True, status=201),
    R("DELETE", "/apps/{app}/collaborators/{email}", apps.remove_collaborator),
    R("GET", "/apps/{app}/builds", apps.list_builds),
    R("GET", "/apps/{app}/logs", apps.logs),
    # issue 18, item 4: log drains
    R("GET", "/apps/{app}/drains", apps.list_drains),
    R("POST", "/apps/{app}/drains", apps.add_drain, body=True, status=201),
    R("DELETE", "/apps/{app}/drains/{drain}", apps.remove_drain),
    # issue 16, item 5: maintenance mode and canary
    R("GET", "/apps/{app}/maintenance", apps.get_maintenance),
    R("PUT", "/apps/{app}/maintenance", apps.set_maintenance, body=True),
    R("PUT", "/apps/{app}/canary", apps.set_canary, body=True),
    R("DELETE", "/apps/{app}/canary", apps.unset_canary),
    # issue 18, items 5 and 7: activity, releases:info, deploy webhooks
    R("GET", "/apps/{app}/activity", activity.list_activity),
    R("GET", "/apps/{app}/releases/{version}", activity.release_info),
    R("GET", "/apps/{app}/webhooks", activity.list_webhooks),
    R("POST", "/apps/{app}/webhooks", activity.add_webhook, body=True, status=201),
    R("DELETE", "/apps/{app}/webhooks/{webhook}", activity.remove_webhook),
]


def _bind(pattern: list[str], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for want, got in zip(pattern, segments):
        if want.startswith("{") and want.endswith("}"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def match(method: str, segments: list[str]) -> tuple[tuple[Route, dict[str, str]] | None, set[str]]:
    """The route and its path parameters, or None and the methods that the
    path does allow (empty: no such path → 404; else → 405)."""
    allowed: set[str] = set()
    for route in ROUTES:
        params = _bind(route.segments, segments)
        if params is None:
            continue
        if route.method == method:
            return (route, params), allowed
        allowed.add(route.method)
    return None, allowed
