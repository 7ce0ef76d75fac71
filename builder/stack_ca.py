"""The stack image's trust layer: the CA certificates this host trusts beyond
Debian's own, added on top of the debootstrapped base image.

Operators behind a TLS-inspecting proxy, or with a private package index,
install their CA where Debian's `update-ca-certificates` reads it
(`/usr/local/share/ca-certificates`) or name a PEM bundle in
`SHIPWAY_EXTRA_CA`. A build that cannot verify the index's certificate
cannot install a single package, so every such certificate is put into the
image's trust store, and the variables with which language tools pick a
bundle of their own (Python's ssl and requests, pip, Node.js and npm, Hex)
point at the system bundle.

The set is read on every call from what the host has now; its hash is part
of the image's tag, so a changed set means a new image, built once. The
layer is one short container (update-ca-certificates as root, no network)
committed over the base image: a new CA costs seconds, not a new
debootstrap.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import time
from pathlib import Path
from typing import Iterable

from cryptography import x509

from core.output import Output


LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
# Where the layer puts the certificates (a folder of their own under the
# local directory, which update-ca-certificates reads recursively).
IMAGE_CA_DIR = "usr/local/share/ca-certificates/shipway"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Tools that do not read the system store by default, told to use it. The
# bundle holds Debian's roots and the added ones, so pointing a tool at it
# never takes a root away.
TRUST_ENV = {
    "SSL_CERT_FILE": SYSTEM_BUNDLE,        # Python's ssl default context, OpenSSL tools
    "REQUESTS_CA_BUNDLE": SYSTEM_BUNDLE,   # requests (certifi otherwise)
    "PIP_CERT": SYSTEM_BUNDLE,             # pip, whatever pip version a venv gets
    "NODE_EXTRA_CA_CERTS": SYSTEM_BUNDLE,  # Node.js and npm (added to node's roots)
    "HEX_CACERTS_PATH": SYSTEM_BUNDLE,     # Hex (its own store otherwise)
}
LAYER_COMMAND = ["/usr/sbin/update-ca-certificates"]
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S)


class TrustError(RuntimeError):
    """A CA source the operator named cannot be used (one line, for the CLI)."""


def parse_pem_certificates(data: bytes, source: str) -> list[bytes]:
    """Every certificate of a PEM file or bundle, as DER; a block that is
    not a certificate is an error naming its source."""
    found: list[bytes] = []
    for number, match in enumerate(_PEM.finditer(data), 1):
        try:
            der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
            x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise TrustError(f"{source}: certificate {number} is not valid: {e}") from None
        found.append(der)
    return found


def local_certificates(directory: Path = LOCAL_CA_DIR) -> list[bytes]:
    """The host's locally installed CAs: every `*.crt` below `directory`,
    as update-ca-certificates takes them. Unreadable files are skipped (not
    the operator's choice of what to trust, only what happens to lie there)."""
    if not directory.is_dir():
        return []
    found: list[bytes] = []
    for path in sorted(directory.rglob("*.crt")):
        try:
            found += parse_pem_certificates(path.read_bytes(), str(path))
        except (OSError, TrustError):
            continue
    return found


def extra_certificates(bundle: str | None) -> list[bytes]:
    """The PEM bundle named by SHIPWAY_EXTRA_CA: it must exist and hold at
    least one certificate, since the operator asked for it."""
    if not bundle:
        return []
    try:
        data = Path(bundle).expanduser().read_bytes()
    except OSError as e:
        raise TrustError(f"SHIPWAY_EXTRA_CA: cannot read {bundle}: {e.strerror}") from None
    found = parse_pem_certificates(data, f"SHIPWAY_EXTRA_CA {bundle}")
    if not found:
        raise TrustError(f"SHIPWAY_EXTRA_CA: {bundle} holds no PEM certificate")
    return found


def ca_set(extra_ca: str | None, directory: Path = LOCAL_CA_DIR) -> list[bytes]:
    """The certificates the image adds, deduplicated, in a stable order."""
    unique = {hashlib.sha256(der).hexdigest(): der
              for der in [*local_certificates(directory), *extra_certificates(extra_ca)]}
    return [unique[key] for key in sorted(unique)]


def trust_version(certificates: Iterable[bytes]) -> str:
    """A short hash of the set and of how the layer is made."""
    recipe = {"certs": sorted(hashlib.sha256(der).hexdigest() for der in certificates),
              "env": TRUST_ENV, "command": LAYER_COMMAND, "dir": IMAGE_CA_DIR}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def certificates_tar(certificates: list[bytes]) -> bytes:
    """The layer's input: one root-owned `.crt` per certificate, named by
    its hash (nothing of the host's file names goes into the image)."""
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(IMAGE_CA_DIR)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
        tar.addfile(info)
        for der in certificates:
            data = _pem(der)
            info = tarfile.TarInfo(f"{IMAGE_CA_DIR}/shipway-{hashlib.sha256(der).hexdigest()[:16]}.crt")
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_trust_layer(base: str, tag: str, certificates: list[bytes], labels: dict[str, str],
                      output: Output) -> None:
    """Commit `base` + the certificates in its trust store + TRUST_ENV as `tag`."""
    import docker

    repository, _, version = tag.rpartition(":")
    output(f"-----> trust layer: {len(certificates)} added CA certificate(s), as {tag}")
    client = docker.from_env()
    container = None
    try:
        # No labels: the committed image would keep them.
        container = client.containers.create(base, command=LAYER_COMMAND, network_disabled=True)
        container.put_archive("/", certificates_tar(certificates))
        container.start()
        code = container.wait(timeout=300).get("StatusCode")
        said = container.logs().decode("utf-8", "replace").strip()
        for line in said.splitlines():
            output("       " + line)
        if code != 0:
            raise RuntimeError(f"update-ca-certificates failed ({code}): {said[-500:]}")
        changes = [f"ENV {key}={value}" for key, value in TRUST_ENV.items()]
        changes += [f"LABEL {key}={value}" for key, value in labels.items()]
        changes += ['CMD ["/bin/bash"]', "WORKDIR /app"]
        container.commit(repository=repository, tag=version, changes=changes)
    finally:
        if container is not None:
            container.remove(force=True)
        client.close()
