"""Finding 8: signed slug URLs and the never-expiring keys-URL signatures
were written to the access log (the server's log), where anyone who reads it
could download a slug or an app's key list. Now no signature or expiry
reaches any log, and a keys-URL signature expires (the container is handed a
fresh one with each fetch)."""
from __future__ import annotations

import hashlib
import hmac
import shlex
import time
from urllib.parse import parse_qs, urlsplit, urlunsplit

import docker
import pytest
import requests

from tests.e2e.helpers import new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _replica_env(instance: str, app: str) -> dict[str, str]:
    client = docker.from_env()
    try:
        [container] = [c for c in client.containers.list(
            filters={"label": [f"shipway.instance={instance}", f"shipway.app={app}",
                              "shipway.process=web"]})]
        out = container.exec_run(["cat", "/shipway/env"]).output.decode()
        refreshed = container.exec_run(["cat", "/shipway/ssh/keys_url"])
    finally:
        client.close()
    env = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    env["_refreshed_keys_url"] = refreshed.output.decode().strip() if refreshed.exit_code == 0 else ""
    return env


def test_no_signed_url_in_the_logs_and_keys_signatures_expire(make_server, stack_image,
                                                               tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "owner", "procfile", "logsec")
    user.push()
    env = _replica_env(server.instance, app)
    slug_url, keys_url = env["SHIPWAY_SLUG_URL"], env["SHIPWAY_KEYS_URL"]
    slug_query, keys_query = parse_qs(urlsplit(slug_url).query), parse_qs(urlsplit(keys_url).query)
    secrets = [slug_query["signature"][0], slug_query["expires"][0], keys_query["sig"][0]]

    # The host downloads the slug through the same signed URL, on the API port.
    local = urlunsplit(urlsplit(slug_url)._replace(netloc=f"127.0.0.1:{server.http_port}"))
    assert requests.get(local, timeout=30).status_code == 200
    # The container's keys URL works, and names a fresh one.
    keys = requests.get(keys_url, timeout=10)
    assert keys.status_code == 200, keys.text

    time.sleep(1)  # the access log line is written when the request ends
    log = server.log_path.read_text(errors="replace")
    assert f"GET /slugs/" in log and "expires=REDACTED" in log, log[-3000:]
    for secret in secrets:
        assert secret not in log, f"a signature or expiry is in the server log: {secret}"
    fresh = keys.headers["Shipway-Keys-Url"]
    assert fresh.startswith(f"/keys/{app}?expires=") and "&sig=" in fresh

    # A keys signature that never expires (the old scheme) is refused, and so
    # is a well-signed one whose time has passed.
    secret_key = (server.data_dir / "runner-keys.secret").read_text().strip().encode()
    base = keys_url.split("/keys/", 1)[0]
    forever = hmac.new(secret_key, b"keys:" + app.encode(), hashlib.sha256).hexdigest()
    assert requests.get(f"{base}/keys/{app}?sig={forever}", timeout=10).status_code == 403
    past = int(time.time()) - 10
    expired = hmac.new(secret_key, f"keys:{app}:{past}".encode(), hashlib.sha256).hexdigest()
    r = requests.get(f"{base}/keys/{app}?expires={past}&sig={expired}", timeout=10)
    assert r.status_code == 403, r.text
    # The signature is the app's own: not valid for another app.
    other = keys_url.replace(f"/keys/{app}?", "/keys/someone-else?")
    assert requests.get(other, timeout=10).status_code == 403

    # The container keeps the fresh URL it was handed, for its next fetch.
    refreshed = wait_for(lambda: _replica_env(server.instance, app)["_refreshed_keys_url"],
                         timeout=30)
    assert refreshed.startswith(base + f"/keys/{app}?expires=")
    assert requests.get(refreshed, timeout=10).status_code == 200
