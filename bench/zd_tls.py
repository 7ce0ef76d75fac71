"""HTTPS for bench/zero_downtime.py (issue 16): clients through the router's
https port, and a certificate renewal forced now, issued for real by pebble.

The renewal is the server's own code path (controller.certificates:
CertificateManager.tick, router.acme's ACME client, HTTP-01 answered by the
router, the result stored in the server's database and swapped into the
running HAProxy through its admin socket), run from the bench's process with
a clock set just past the renewal point (2/3 of the certificate's lifetime):
pebble's certificates last years, and the server's loop would otherwise
renew at a time no benchmark waits for.
"""
from __future__ import annotations

import datetime as dt
import http.client
import os
import socket
import ssl
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509

from controller.certificates import certificates, make_manager
from controller.crypto import Keyring
from controller.db import Database
from core.settings import Settings
from router.haproxy_conf import Layout
from router.haproxy_tls import TLSManager


class LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to the router on 127.0.0.1, verifying the certificate for the
    name sent as SNI (`host`), as a browser at that name would."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def client_context(root_pem: str) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=root_pem)


def served_certificate(port: int, sni: str) -> x509.Certificate:
    """The leaf the router presents for `sni` now (not verified: inspected)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))


def describe(cert: x509.Certificate) -> str:
    return f"serial {cert.serial_number:x}, not after {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}"


def force_renewal(data_dir: Path, https_port: int, hostname: str, directory: str,
                  ca_bundle: str, database_url: str | None = None) -> list[str]:
    """Renew `hostname`'s certificate now, as the server's loop would once 2/3
    of its lifetime has passed; returns the names the tick renewed."""
    settings = Settings(data_dir=data_dir, https_port=https_port, acme_directory=directory,
                        acme_ca_bundle=ca_bundle, acme_email="ops@example.com",
                        database_url=database_url)
    db = Database(settings.effective_database_url)
    try:
        keyring = Keyring(settings.data_dir, os.environ.get("SHIPWAY_MASTER_KEY"))
        layout = Layout(dir=str(data_dir / "router" / "haproxy"), listen_host="127.0.0.1",
                        listen_port=0, https_port=https_port)
        manager = make_manager(db, keyring, settings, TLSManager(layout))
        assert manager is not None
        with db.read() as conn:
            row = conn.execute(sa.select(certificates.c.not_before, certificates.c.not_after)
                               .where(certificates.c.hostname == hostname)).one()
        at = manager.store.renew_at(row.not_before, row.not_after) + dt.timedelta(seconds=1)
        # Only this name: every other issued certificate is due at `at` too.
        return [hostname] if hostname in manager.store.due(at) and manager.issue(hostname) else []
    finally:
        db.dispose()
