"""HTTP to the Shipway API, with every failure turned into a one-line
`click` error (exit 1) instead of a traceback."""
from __future__ import annotations

import json
import os
from typing import Any, Callable
from urllib.parse import quote

import click
import requests
import requests.auth

# Deploys run inside the request (config:set, rollback, scale), so reads may
# take as long as a deploy does; connecting must not.
TIMEOUT = (10, 30 * 60)
NDJSON = "application/x-ndjson"


class ServerError(click.ClickException):
    """The server said no (its message), or could not be reached."""

    exit_code = 1

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def seg(value: str | int) -> str:
    """One URL path segment (emails, fingerprints with '/' and '+')."""
    return quote(str(value), safe="")


class _Bearer(requests.auth.AuthBase):
    """The API key as a Bearer token. Always passed as `auth`, even without a
    key: otherwise requests would send ~/.netrc's entry for the host instead
    (and that may be another account, or a key SHIPWAY_API_KEY overrides)."""

    def __init__(self, api_key: str | None) -> None:
        self.api_key = api_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        if self.api_key:
            request.headers["Authorization"] = f"Bearer {self.api_key}"
        return request


# --- issue 16 item 4: the server's certificate is verified (the system's
# CAs, or SHIPWAY_CA_BUNDLE: a PEM file for a private CA).
def ca_bundle() -> str | bool:
    bundle = os.environ.get("SHIPWAY_CA_BUNDLE")
    if bundle and not os.path.isfile(bundle):
        raise ServerError(f"SHIPWAY_CA_BUNDLE: no such file: {bundle}")
    return bundle or True


def tls_refused(url: str) -> str:
    return (f"the TLS certificate of {url} is not trusted (for a private CA, "
            "set SHIPWAY_CA_BUNDLE to its PEM file)")
# --- end issue 16 item 4


class Client:
    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url
        self.api_key = api_key

    def call(self, method: str, path: str, body: Any = None, auth: bool = True,
             progress: Callable[[str], None] | None = None,
             read_timeout: float | None = TIMEOUT[1]) -> Any:
        """The answer's JSON. With `progress`, a deploy's lines are passed to
        it as the server streams them (NDJSON)."""
        headers = {"Accept": "application/x-ndjson, application/json" if progress
                   else "application/json"}
        if auth and not self.api_key:
            raise ServerError(f"not logged in to {self.url}: run `shipway login`")
        try:
            response = requests.request(method, f"{self.url}/api{path}", json=body,
                                        headers=headers, timeout=(TIMEOUT[0], read_timeout),
                                        auth=_Bearer(self.api_key if auth else None),
                                        stream=progress is not None, verify=ca_bundle())
            if progress and response.headers.get("Content-Type", "").startswith(NDJSON):
                return self._streamed(response, progress)
        except requests.exceptions.SSLError:
            raise ServerError(tls_refused(self.url)) from None
        except requests.ConnectionError:
            raise ServerError(f"cannot reach the Shipway server at {self.url} "
                              "(is it running? set --url or SHIPWAY_URL)") from None
        except requests.Timeout:
            raise ServerError(f"the Shipway server at {self.url} did not answer in time") from None
        except requests.RequestException as e:
            raise ServerError(f"request to {self.url} failed: {e}") from None
        return self._answer(response, auth)

    def follow(self, path: str, on_line: Callable[[str], None]) -> None:
        """GET an endpoint that streams NDJSON `{"log": line}` for as long as
        the server keeps it open (`logs -f`): no read timeout."""
        self.call("GET", path, progress=on_line, read_timeout=None)

    def _streamed(self, response: requests.Response, progress: Callable[[str], None]) -> Any:
        last: Any = None
        for raw in response.iter_lines():
            if not raw:
                continue
            try:
                last = json.loads(raw)
            except ValueError:
                raise ServerError(f"unexpected answer from {self.url} (bad NDJSON)") from None
            if isinstance(last, dict) and "log" in last:
                progress(str(last["log"]))
        if isinstance(last, dict) and "result" in last:
            return last["result"]
        if isinstance(last, dict) and last.get("error"):
            raise ServerError(str(last["error"]), last.get("code"))
        raise ServerError(f"the answer from {self.url} ended early")

    def _answer(self, response: requests.Response, auth: bool) -> Any:
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            message = message or f"HTTP {response.status_code} from {self.url}"
            if response.status_code == 401 and auth:
                message += " (run `shipway login`)"
            if isinstance(data, dict) and data.get("log_tail"):
                message += "\n" + "\n".join(str(line) for line in data["log_tail"])
            raise ServerError(message, response.status_code)
        if data is None:
            raise ServerError(f"unexpected answer from {self.url} "
                              f"(HTTP {response.status_code}, not JSON)")
        return data
