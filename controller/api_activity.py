"""API handlers of issue 18 items 5 and 7: an app's activity, one release
with its build output, and deploy webhooks."""
from __future__ import annotations

from typing import Any

from controller.activity import DEFAULT_LIMIT, Activity
from controller.api_views import Call, build_json, release_json, when
from controller.errors import BadRequest
from controller.webhooks import Webhook


def activity_json(entry: Activity) -> dict[str, Any]:
    return {"id": entry.id, "action": entry.action, "user": entry.actor,
            "summary": entry.summary, "detail": entry.detail,
            "created_at": when(entry.created_at)}


def list_activity(call: Call) -> list[dict[str, Any]]:
    """`?n=N`: the newest N (default 50), newest first."""
    n = call.query.get("n", str(DEFAULT_LIMIT))
    return [activity_json(a) for a in
            call.controller.list_activity(call.me, call.params["app"], n)]


def release_info(call: Call) -> dict[str, Any]:
    raw = call.params["version"].lstrip("vV")
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2**31:
        raise BadRequest("a release is named by its number, like 3 or v3")
    controller = call.controller
    app = controller.get_app(call.me, call.params["app"])
    release = controller.get_release(app, int(raw))
    build = controller.build_for_release(app, release)
    body = release_json(release) or {}
    body["build"] = build_json(build) if build is not None else None
    return body


def webhook_json(hook: Webhook) -> dict[str, Any]:
    body: dict[str, Any] = {"id": hook.id, "url": hook.url, "created_by": hook.created_by,
                            "created_at": when(hook.created_at)}
    if hook.secret is not None:
        body["secret"] = hook.secret
    return body


def list_webhooks(call: Call) -> list[dict[str, Any]]:
    return [webhook_json(h) for h in call.controller.list_webhooks(call.me, call.params["app"])]


def add_webhook(call: Call) -> dict[str, Any]:
    url = call.field("url", str)
    return webhook_json(call.controller.add_webhook(call.me, call.params["app"], url))


def remove_webhook(call: Call) -> dict[str, Any]:
    hook = call.controller.remove_webhook(call.me, call.params["app"], call.params["webhook"])
    return {"ok": True, "id": hook.id, "url": hook.url}
