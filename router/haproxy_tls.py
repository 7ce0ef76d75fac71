"""Certificates of the HAProxy router's TLS frontend, changed at run time.

The https frontend binds `ssl crt tls/default.pem crt-list tls/crt-list.txt`:
a hostname's certificate is one PEM file (chain + key) and one crt-list line
`<file> <hostname>`, loaded and swapped with the runtime API (`new ssl
cert`, `set ssl cert`, `commit ssl cert`, `add ssl crt-list`, `del ssl
crt-list`, `del ssl cert`). A swap never reloads the proxy and never touches
an established TLS connection; the files are written too, so that a
restarted proxy serves the same certificates. A name with no certificate
gets the default (self-signed) one, which never disturbs the others.

HTTP-01 answers live in `acme.map` (token -> key authorization), HTTPS-only
hostnames in `https-only.map`; both are changed with `add map`/`del map`.
"""
from __future__ import annotations

import datetime
import os
import re
import threading
from pathlib import Path

import idna
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from router.haproxy_conf import Layout, normalize_hostname
from router.haproxy_runtime import Runtime, RuntimeError_, _is_error

_HOSTNAME = re.compile(r"^(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*"
                       r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
_KEY_AUTH = re.compile(r"^[A-Za-z0-9_.-]{1,256}\Z")


def check_hostname(name: str) -> str:
    """A hostname as the TLS files use it (lowercase, no trailing dot)."""
    host = normalize_hostname(name)
    if host and not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode()
        except idna.IDNAError:
            raise ValueError(f"not a hostname: {name[:80]!r}") from None
    if not _HOSTNAME.match(host):
        raise ValueError(f"not a hostname: {name[:80]!r}")
    return host


def self_signed_pem(common_name: str = "shipway-default", days: int = 3650) -> str:
    """A throw-away certificate + key for names without a certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode()
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode())


def _write(path: str, text: str, mode: int = 0o600) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _check_pem(pem: str) -> str:
    """Chain then key, no blank line (a blank line ends a runtime payload)."""
    lines = [line for line in pem.replace("\r", "").splitlines() if line.strip()]
    text = "\n".join(lines) + "\n"
    if "PRIVATE KEY-----" not in text or "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError("a certificate PEM needs the chain and the private key")
    return text


class TLSManager:
    """Loads, swaps and removes certificates in a running HAProxy."""

    def __init__(self, layout: Layout, runtime: Runtime | None = None) -> None:
        self.layout = layout
        self.runtime = runtime or Runtime(layout.admin_socket)
        # HAProxy allows one certificate transaction at a time.
        self._lock = threading.RLock()

    # --- files a (re)started proxy reads -----------------------------------
    def prepare(self) -> None:
        """Create the files the https frontend needs before HAProxy starts."""
        Path(self.layout.tls_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.path.exists(self.layout.default_cert):
            _write(self.layout.default_cert, self_signed_pem())
        for path in (self.layout.crt_list, self.layout.acme_map, self.layout.https_only_map):
            if not os.path.exists(path):
                _write(path, "", 0o644)

    def cert_path(self, hostname: str) -> str:
        return f"{self.layout.tls_dir}/{check_hostname(hostname)}.pem"

    # --- certificates --------------------------------------------------------
    def install(self, hostname: str, pem: str) -> None:
        """Serve `pem` (chain + key) for `hostname`: a new certificate is
        loaded and added to the crt-list, a known one swapped in place."""
        host = check_hostname(hostname)
        pem = _check_pem(pem)
        path = self.cert_path(host)
        with self._lock:
            _write(path, pem)
            self._file_line(path, host, present=True)
            loaded = path in self.loaded()
            if not loaded:
                self._cmd(f"new ssl cert {path}")
            try:
                self._payload(f"set ssl cert {path}", pem)
                self._cmd(f"commit ssl cert {path}")
            except Exception:
                self._cmd(f"abort ssl cert {path}", check=False)
                raise
            if not loaded or path not in self.listed():
                self._payload(f"add ssl crt-list {self.layout.crt_list}", f"{path} {host}\n")

    def remove(self, hostname: str) -> None:
        """Stop serving `hostname`'s certificate (it gets the default one)."""
        host = check_hostname(hostname)
        path = self.cert_path(host)
        with self._lock:
            self._file_line(path, host, present=False)
            if path in self.listed():
                self._cmd(f"del ssl crt-list {self.layout.crt_list} {path}")
            if path in self.loaded():
                self._cmd(f"del ssl cert {path}")
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def hostnames(self) -> set[str]:
        """The hostnames whose certificate the crt-list file holds."""
        try:
            lines = Path(self.layout.crt_list).read_text().splitlines()
        except OSError:
            return set()
        return {line.split()[1] for line in lines if len(line.split()) == 2}

    def loaded(self) -> set[str]:
        """Certificate files HAProxy holds in memory (`show ssl cert`)."""
        out = self.runtime.raw("show ssl cert")
        return {line.strip() for line in out.splitlines()
                if line.strip() and not line.startswith("#")}

    def listed(self) -> set[str]:
        out = self.runtime.raw(f"show ssl crt-list {self.layout.crt_list}")
        return {line.split()[0] for line in out.splitlines()
                if line.strip() and not line.startswith("#")}

    # --- HTTP-01 answers and HTTPS-only hostnames ----------------------------
    def add_challenge(self, token: str, key_authorization: str) -> None:
        if not _TOKEN.match(token) or not _KEY_AUTH.match(key_authorization):
            raise ValueError("not an ACME token")
        self._map_set(self.layout.acme_map, token, key_authorization)

    def remove_challenge(self, token: str) -> None:
        if _TOKEN.match(token):
            self._map_del(self.layout.acme_map, token)

    def set_https_only(self, hostnames: list[str], on: bool) -> None:
        for name in hostnames:
            host = check_hostname(name)
            if on:
                self._map_set(self.layout.https_only_map, host, "1")
            else:
                self._map_del(self.layout.https_only_map, host)

    def sync_https_only(self, hostnames: set[str]) -> None:
        """Make the redirected names exactly `hostnames`."""
        with self._lock:
            have = set(_read_map(self.layout.https_only_map))
            self.set_https_only(sorted(have - hostnames), False)
            self.set_https_only(sorted(hostnames - have), True)

    # --- internals -------------------------------------------------------------
    def _map_set(self, path: str, key: str, value: str) -> None:
        with self._lock:
            entries = _read_map(path)
            if entries.get(key) == value:
                return
            verb = "set" if key in self.runtime.map_entries(path) else "add"
            self._cmd(f"{verb} map {path} {key} {value}")
            entries[key] = value
            _write(path, "".join(f"{k} {v}\n" for k, v in entries.items()), 0o644)

    def _map_del(self, path: str, key: str) -> None:
        with self._lock:
            entries = _read_map(path)
            entries.pop(key, None)
            _write(path, "".join(f"{k} {v}\n" for k, v in entries.items()), 0o644)
            if key in self.runtime.map_entries(path):
                self._cmd(f"del map {path} {key}")

    def _file_line(self, path: str, host: str, present: bool) -> None:
        try:
            lines = Path(self.layout.crt_list).read_text().splitlines()
        except OSError:
            lines = []
        lines = [line for line in lines if line.split()[:1] != [path]]
        if present:
            lines.append(f"{path} {host}")
        _write(self.layout.crt_list, "".join(f"{line}\n" for line in lines), 0o644)

    def _cmd(self, command: str, check: bool = True) -> str:
        answer = self.runtime.raw(command)
        if check:
            _raise_on_error(command, answer)
        return answer

    def _payload(self, command: str, payload: str) -> str:
        """A command with a multi-line payload (`cmd <<` ... blank line)."""
        answer = self.runtime.with_payload(command, payload, timeout=10)
        _raise_on_error(command, answer)
        return answer


def _raise_on_error(command: str, answer: str) -> None:
    bad = [line for line in answer.splitlines() if _is_error(line)]
    if bad:
        raise RuntimeError_(f"{command.split(' <<')[0]}: {'; '.join(bad)}")


def _read_map(path: str) -> dict[str, str]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(None, 1) for line in lines if len(line.split()) == 2)
