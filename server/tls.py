"""The platform's own HTTPS (issue 16 item 4): the API and git smart HTTP
served over TLS on the http port when the server has a certificate
(`--tls-cert` chain and `--tls-key`), with Twisted's TLS transport."""
from __future__ import annotations

import re

from OpenSSL import SSL, crypto
from twisted.internet import reactor, ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.web.server import Site
from zope.interface import implementer

from core.settings import Settings

_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class TLSConfigError(ValueError):
    """The certificate or key given to the server is unusable (one line)."""


def certificate_options(cert_path: str, key_path: str) -> ssl.CertificateOptions:
    """Options serving the chain in `cert_path` (leaf first) with `key_path`."""
    try:
        with open(cert_path) as f:
            chain = _PEM_CERT.findall(f.read())
        with open(key_path) as f:
            key = crypto.load_privatekey(crypto.FILETYPE_PEM, f.read())
    except OSError as e:
        raise TLSConfigError(f"cannot read {e.filename}: {e.strerror}") from None
    except crypto.Error:
        raise TLSConfigError(f"--tls-key {key_path}: not a PEM private key") from None
    if not chain:
        raise TLSConfigError(f"--tls-cert {cert_path}: no PEM certificate in it")
    certs = [crypto.load_certificate(crypto.FILETYPE_PEM, c.encode()) for c in chain]
    try:
        return ssl.CertificateOptions(privateKey=key, certificate=certs[0],
                                      extraCertChain=certs[1:], raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
    except Exception:
        raise TLSConfigError("--tls-key does not match the first certificate of --tls-cert") from None


@implementer(IOpenSSLServerConnectionCreator)
class ReplaceableCertificate:
    """The API's TLS when its certificate comes from ACME: a self-signed one
    until the first is issued, then each new one used from the next
    connection on (a new context each time: a used one cannot change)."""

    def __init__(self, path: str) -> None:
        from router.haproxy_tls import self_signed_pem

        self.path = path
        try:
            self.load(open(path).read())
        except (OSError, ValueError, crypto.Error, SSL.Error):
            self.load(self_signed_pem("shipway-api"))

    def load(self, pem: str) -> None:
        """Serve `pem` (chain, then key) to the next connections."""
        import os

        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pem)
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.use_certificate_chain_file(tmp)
        ctx.use_privatekey_file(tmp)
        ctx.check_privatekey()
        os.replace(tmp, self.path)
        self._ctx = ctx

    def serverConnectionForTLS(self, protocol: object) -> SSL.Connection:  # noqa: N802
        return SSL.Connection(self._ctx, None)


def acme_public_host(settings: Settings) -> str | None:
    """The API's own name to get a certificate for (ACME on, no --tls-cert,
    and a public host that is a DNS name rather than an address)."""
    import ipaddress

    from router.haproxy_tls import check_hostname

    if settings.tls_cert or not settings.acme_directory or not settings.https_port:
        return None
    try:
        ipaddress.ip_address(settings.public_host)
        return None
    except ValueError:
        pass
    try:
        host = check_hostname(settings.public_host)
    except ValueError:
        return None
    return host if "." in host and host != "localhost" else None


_api_certificate: list[ReplaceableCertificate] = []  # set by listen_http for the ACME loop


def listen_http(settings: Settings, site: Site) -> None:
    """The API port: TLS when a certificate is configured, plain HTTP else."""
    if acme_public_host(settings):
        from pathlib import Path

        Path(settings.data_dir, "tls").mkdir(parents=True, exist_ok=True, mode=0o700)
        api = ReplaceableCertificate(str(Path(settings.data_dir, "tls", "api.pem")))
        _api_certificate[:] = [api]
        reactor.listenSSL(settings.http_port, site, api, interface=settings.bind_host)
        return
    if settings.tls_cert or settings.tls_key:
        if not (settings.tls_cert and settings.tls_key):
            raise TLSConfigError("--tls-cert and --tls-key go together")
        options = certificate_options(settings.tls_cert, settings.tls_key)
        reactor.listenSSL(settings.http_port, site, options, interface=settings.bind_host)
    else:
        reactor.listenTCP(settings.http_port, site, interface=settings.bind_host)


# --- the router's TLS frontend and the certificates' manager ---------------
CERTIFICATE_INTERVAL = 5.0  # seconds between two reconciliations of the names


def with_https(router: object, settings: Settings) -> object:
    """Kept for server/main.py's call; a no-op now: the HAProxy router takes
    settings.https_port into its layout itself and prepares the TLS files in
    its own start()."""
    return router


def start_certificates(services: object) -> None:
    """With an ACME directory: every few seconds (in a thread), match the
    certificates to the routed names (domains:remove forgets one), then
    issue what is pending, retry what failed (after its backoff) and renew
    what reached 2/3 of its lifetime, loading each into the proxy."""
    from twisted.internet import task, threads
    from twisted.logger import Logger

    from controller.certificates import https_only_names, make_manager, routed_names
    from router.haproxy import HAProxyRouter
    from router.haproxy_tls import TLSManager

    settings, router, controller = services.settings, services.router, services.controller
    if not isinstance(router, HAProxyRouter) or not settings.https_port:
        return
    tls = router.tls or TLSManager(router.layout, router.runtime)
    manager = make_manager(controller.db, controller.keyring, settings, tls,
                           controller.locks)  # one issuer per name across processes
    if manager is None:
        return
    log = Logger(namespace="shipway.certificates")
    busy: list[bool] = []

    public = acme_public_host(settings)
    if public and _api_certificate:
        tls = _APIAndRouter(tls, public, _api_certificate[0])
        manager.target = tls

    def once() -> None:
        routed = routed_names(controller.db, settings.app_hostname)
        if public:
            routed[public] = None  # the platform's own name: no app
        manager.reconcile(routed)
        manager.tick()
        tls.sync_https_only(https_only_names(controller.db, controller.keyring, routed))

    def step() -> None:
        if busy:
            return
        busy.append(True)
        d = threads.deferToThread(once)
        d.addErrback(lambda f: log.failure("certificates: reconciliation failed", f))
        d.addBoth(lambda _: busy.clear())

    threads.deferToThread(manager.load).addBoth(
        lambda _: task.LoopingCall(step).start(CERTIFICATE_INTERVAL))


class _APIAndRouter:
    """The certificate target when the API's name has an ACME certificate:
    the router serves every name, and the API's listener its own."""

    def __init__(self, tls: object, public_host: str, api: ReplaceableCertificate) -> None:
        self._tls, self.public_host, self.api = tls, public_host, api

    def install(self, hostname: str, pem: str) -> None:
        self._tls.install(hostname, pem)
        if hostname == self.public_host:  # swapped on the reactor thread, between handshakes
            reactor.callFromThread(self.api.load, pem)

    def __getattr__(self, name: str):
        return getattr(self._tls, name)
