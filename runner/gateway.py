"""What run containers may fetch from the host: their slug and their app's
SSH keys, on a small HTTP listener bound to the Docker bridge gateway.

Shipway's API listens on loopback only, which containers cannot reach. Rather
than open the whole API to them, a second listener on the bridge gateway
address serves just `/slugs/...` (the slug store's signed downloads) and
`/keys/<app>?expires=...&sig=...` (the authorized_keys of the users allowed
on the app, signed per app so one app's containers cannot read another's
list). A keys signature expires (SHIPWAY_KEYS_URL_TTL, an hour by default):
each answer carries a fresh URL in `Shipway-Keys-Url`, which the container
uses for its next fetch (every 60 s), so a URL seen in a log, an
environment or a container long gone stops working on its own.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from twisted.internet import threads
from twisted.logger import Logger
from twisted.web.resource import NoResource, Resource
from twisted.web.server import NOT_DONE_YET, Site

from core.errors import NotFound
from core.settings import Limits, Settings

log = Logger()

# An app's authorized_keys lines by app name (core.errors.NotFound: no such app).
KeysFor = Callable[[str], list[str]]
# The composition root's site for untrusted clients (bounded request bodies).
SiteFactory = Callable[[Resource, Limits], Site]


def bridge_gateway(client: object) -> str:
    """The host's address on Docker's default bridge network."""
    network = client.networks.get("bridge")  # type: ignore[attr-defined]
    for config in network.attrs.get("IPAM", {}).get("Config") or []:
        if config.get("Gateway"):
            return str(config["Gateway"])
        if config.get("Subnet"):
            subnet = ipaddress.ip_network(config["Subnet"], strict=False)
            if subnet.version == 4:
                return str(next(subnet.hosts()))
    raise RuntimeError("cannot find the Docker bridge gateway address")


class KeySigner:
    """Signs per-app key URLs, with an expiry, by a secret kept in the data
    dir: HMAC-SHA256 over "keys:<app>:<expires>"."""

    def __init__(self, settings: Settings) -> None:
        self.ttl = max(60, int(getattr(settings, "keys_url_ttl", 3600)))
        path = Path(settings.data_dir) / "runner-keys.secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        self._secret = path.read_text().strip().encode()

    def sign(self, app: str, expires: int) -> str:
        message = f"keys:{app}:{int(expires)}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def path(self, app: str, now: float | None = None) -> str:
        """`/keys/<app>?expires=...&sig=...`, valid for `ttl` seconds."""
        expires = int(now if now is not None else time.time()) + self.ttl
        return f"/keys/{app}?expires={expires}&sig={self.sign(app, expires)}"

    def url(self, base: str, app: str) -> str:
        return base + self.path(app)

    def check(self, app: str, expires: str, signature: str, now: float | None = None) -> bool:
        """The signature is the app's and has not expired (nor is it dated
        further ahead than one lifetime: no forged long-lived URL)."""
        if not (expires.isascii() and expires.isdigit() and len(expires) < 12):
            return False
        left = int(expires) - (now if now is not None else time.time())
        if not 0 < left <= self.ttl + 60:
            return False
        return hmac.compare_digest(self.sign(app, int(expires)), signature)


def gateway_url(settings: Settings, gateway: str) -> str:
    return f"http://{gateway}:{settings.http_port}"


def rebase_url(url: str, settings: Settings, gateway: str) -> str:
    """Point a local slug-store URL (signed for the API's loopback address) at
    the gateway listener instead; other URLs (S3) are left alone. The local
    store's signature covers the path and query, not the host."""
    parts = urlsplit(url)
    api = urlsplit(settings.api_url)
    local_hosts = {api.hostname, "127.0.0.1", "localhost", settings.bind_host}
    if parts.hostname in local_hosts and (parts.port or 80) == settings.http_port:
        return urlunsplit(parts._replace(netloc=f"{gateway}:{settings.http_port}"))
    return url


class KeysResource(Resource):
    """GET /keys/<app>?expires=<t>&sig=<hmac>: the app's authorized_keys
    lines, and in `Shipway-Keys-Url` the path to fetch them next time."""

    isLeaf = True

    def __init__(self, keys_for: KeysFor, signer: KeySigner) -> None:
        super().__init__()
        self.keys_for = keys_for  # the controller's answer; NotFound for no such app
        self.signer = signer

    def render_GET(self, request):  # noqa: N802 (Twisted's name)
        parts = [p for p in request.postpath if p]
        signature = (request.args.get(b"sig") or [b""])[0].decode("ascii", "replace")
        expires = (request.args.get(b"expires") or [b""])[0].decode("ascii", "replace")
        if len(parts) != 1:
            request.setResponseCode(404)
            return b"not found\n"
        app_name = parts[0].decode("utf-8", "replace")
        if not self.signer.check(app_name, expires, signature):
            request.setResponseCode(403)
            return b"bad or expired signature\n"

        def lookup() -> bytes:
            lines = self.keys_for(app_name)
            return "".join(line.strip() + "\n" for line in lines).encode()

        def done(body: bytes) -> None:
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.setHeader(b"shipway-keys-url", self.signer.path(app_name).encode())
            request.write(body)
            request.finish()

        def failed(failure) -> None:
            request.setResponseCode(404 if failure.check(NotFound) else 500)
            if not failure.check(NotFound):
                log.failure("runner: keys lookup failed for {app}", failure, app=app_name)
            request.finish()

        threads.deferToThread(lookup).addCallbacks(done, failed)
        return NOT_DONE_YET


class GatewayRoot(Resource):
    def __init__(self, slugs_resource: Resource | None, keys: KeysResource) -> None:
        super().__init__()
        if slugs_resource is not None:
            self.putChild(b"slugs", slugs_resource)
        self.putChild(b"keys", keys)

    def getChild(self, path: bytes, request):  # noqa: N802
        return NoResource()


def listen_gateway(settings: Settings, slugs_resource: Resource | None, keys_for: KeysFor,
                   make_site: SiteFactory) -> None:
    """Open the gateway listener (called by the composition root, which
    hands in the slug downloads, the keys lookup and its bounded-request
    site factory). Skipped when the main listener already covers the
    gateway (bind_host 0.0.0.0)."""
    import docker
    from twisted.internet import reactor

    try:
        client = docker.from_env()
        try:
            gateway = bridge_gateway(client)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 (the API still serves without Docker)
        log.error("runner: no Docker bridge gateway ({error}); run containers "
                  "cannot fetch slugs", error=str(exc))
        return
    if settings.bind_host in ("0.0.0.0", gateway):
        return
    root = GatewayRoot(slugs_resource, KeysResource(keys_for, KeySigner(settings)))
    # Run containers hold untrusted code: their request bodies are bounded
    # too, so none can fill the host's disk through Twisted's spooling.
    site = make_site(root, settings.limits)
    from twisted.internet.error import CannotListenError

    try:
        reactor.listenTCP(settings.http_port, site, interface=gateway)
    except CannotListenError as exc:
        log.error("runner: cannot listen on the container gateway: {error}", error=str(exc))
        return
    log.info("runner: container gateway on {gw}:{port}", gw=gateway, port=settings.http_port)
