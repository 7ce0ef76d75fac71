"""A real ACME server for the tests: Debian's `pebble`, with
`pebble-challtestsrv` as its DNS server answering every name with 127.0.0.1.

Pebble validates HTTP-01 on one fixed port (`httpPort`); tests that issue
certificates run their router's plain HTTP port on `Pebble.http_port`.
"""
from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import attrs
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unheld_port() -> int:
    """A port nobody holds for the session that nothing else is handed:
    where pebble connects for HTTP-01 (the router under test binds it only
    while it runs). Nothing reserves it; it is taken below the kernel's
    ephemeral range, which every other `free_port()`, Docker's published
    ports and outgoing connections draw from, so none of those can get it
    meanwhile (one may have: a renewal failed in one CI run)."""
    import random

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low <= 11000:  # no room below the range: take one from it
        return _free_port()
    for _ in range(200):
        port = random.randrange(10000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@attrs.frozen
class Pebble:
    directory: str  # the ACME directory URL
    ca_bundle: str  # PEM trusted for pebble's own HTTPS (SHIPWAY_ACME_CA_BUNDLE)
    http_port: int  # where pebble connects for HTTP-01
    management: str  # pebble's management API (roots)
    challtestsrv: str  # challtestsrv's management API (DNS answers)

    def root_pem(self) -> str:
        """The root that signs what pebble issues (changes every run)."""
        r = requests.get(f"{self.management}/roots/0", verify=self.ca_bundle, timeout=10)
        r.raise_for_status()
        return r.text

    def resolve(self, host: str, address: str) -> None:
        """Make challtestsrv answer `host` with `address` (fault injection)."""
        requests.post(f"{self.challtestsrv}/add-a", json={"host": host, "addresses": [address]},
                      timeout=5).raise_for_status()

    def unresolve(self, host: str) -> None:
        """Back to the default answer (127.0.0.1)."""
        requests.post(f"{self.challtestsrv}/clear-a", json={"host": host},
                      timeout=5).raise_for_status()


def _tls_files(dir: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 and localhost (pebble's HTTPS)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shipway tests pebble CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = dir / "ca.pem", dir / "cert.pem", dir / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.1)


@contextlib.contextmanager
def run_pebble(dir: Path) -> Iterator[Pebble]:
    """pebble and pebble-challtestsrv for as long as the block runs (files in
    `dir`); the session fixture below and bench/zero_downtime.py use it."""
    ca, cert, key = _tls_files(dir)
    dns_port, chall_mgmt, acme_port, mgmt_port = (_free_port() for _ in range(4))
    http_port = _unheld_port()
    tls_port = _unheld_port()
    while tls_port == http_port:
        tls_port = _unheld_port()
    config = {"pebble": {
        "listenAddress": f"127.0.0.1:{acme_port}",
        "managementListenAddress": f"127.0.0.1:{mgmt_port}",
        "certificate": str(cert), "privateKey": str(key),
        "httpPort": http_port, "tlsPort": tls_port,
        "ocspResponderURL": "", "externalAccountBindingRequired": False}}
    (dir / "pebble.json").write_text(json.dumps(config))
    env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_VA_ALWAYS_VALID="0",
               PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
    log = open(dir / "log.txt", "wb")
    chall = subprocess.Popen(
        ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
         "-dns01", f"127.0.0.1:{dns_port}", "-management", f"127.0.0.1:{chall_mgmt}",
         "-http01", "", "-https01", "", "-tlsalpn01", ""], stdout=log, stderr=log)
    server = subprocess.Popen(
        ["pebble", "-config", str(dir / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
        stdout=log, stderr=log, env=env)
    try:
        _wait_port(chall_mgmt, chall, "pebble-challtestsrv")
        _wait_port(acme_port, server, "pebble")
        yield Pebble(directory=f"https://127.0.0.1:{acme_port}/dir", ca_bundle=str(ca),
                     http_port=http_port, management=f"https://127.0.0.1:{mgmt_port}",
                     challtestsrv=f"http://127.0.0.1:{chall_mgmt}")
    finally:
        for proc in (server, chall):
            proc.terminate()
            proc.wait(10)
        log.close()


def pebble_installed() -> bool:
    return bool(shutil.which("pebble") and shutil.which("pebble-challtestsrv"))


@pytest.fixture(scope="session")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    if not pebble_installed():
        pytest.skip("pebble is not installed (scripts/install.sh installs it)")
    with run_pebble(tmp_path_factory.mktemp("pebble")) as running:
        yield running
