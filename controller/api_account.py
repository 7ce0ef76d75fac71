"""API handlers that are not about one app: health, the OpenAPI document,
sign-up, login and the caller's account (API key, SSH keys)."""
from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import yaml

from controller.api_views import Call, ssh_key_json, user_json


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 document shipped in the package (`controller/openapi.yaml`)."""
    text = resources.files("controller").joinpath("openapi.yaml").read_text("utf-8")
    return json.loads(json.dumps(yaml.safe_load(text)))  # plain JSON types only


def health(call: Call) -> dict[str, Any]:
    return {"ok": True}


def openapi(call: Call) -> dict[str, Any]:
    return openapi_document()


def signup(call: Call) -> dict[str, Any]:
    user, key = call.controller.signup(call.field("email", str), call.field("password", str))
    return {"email": user.email, "api_key": key}


def login(call: Call) -> dict[str, Any]:
    user, key = call.controller.login(call.field("email", str), call.field("password", str),
                                      client=call.client)
    return {"email": user.email, "api_key": key}


def account(call: Call) -> dict[str, Any]:
    return user_json(call.me)


def reset_api_key(call: Call) -> dict[str, Any]:
    return {"api_key": call.controller.reset_api_key(call.me)}


def list_ssh_keys(call: Call) -> list[dict[str, Any]]:
    return [ssh_key_json(k) for k in call.controller.list_ssh_keys(call.me)]


def add_ssh_key(call: Call) -> dict[str, Any]:
    return ssh_key_json(call.controller.add_ssh_key(call.me, call.field("key", str)))


def remove_ssh_key(call: Call) -> dict[str, Any]:
    call.controller.remove_ssh_key(call.me, call.params["key"])
    return {"ok": True}
