"""The stack image's tag follows the host's CA set, and a bad
SHIPWAY_EXTRA_CA is one clear error (no Docker; that the image trusts the CA
in build and run containers is tests/e2e/builder/test_stack_ca.py)."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from builder import stack, stack_ca
from core.settings import Settings, load_settings
from tests.conftest import ROOT


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A new CA (PEM bundle for SHIPWAY_EXTRA_CA) and a leaf for localhost."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Shipway test CA"))
          .issuer_name(_name("Shipway test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp / "ca.pem", tmp / "leaf.pem", tmp / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_tag_follows_the_ca_set(tmp_path: Path) -> None:
    local = tmp_path / "local"
    (local / "corp").mkdir(parents=True)
    ca, _, _ = make_ca(tmp_path)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other, _, _ = make_ca(other_dir)
    none = stack_ca.trust_version(stack_ca.ca_set(None, local))
    (local / "corp" / "proxy.crt").write_bytes(ca.read_bytes())
    (local / "ignored.pem").write_bytes(other.read_bytes())  # not *.crt: not read
    one = stack_ca.trust_version(stack_ca.ca_set(None, local))
    assert one != none
    # the same certificate again (in the bundle too) changes nothing
    assert stack_ca.trust_version(stack_ca.ca_set(str(ca), local)) == one
    both = stack_ca.trust_version(stack_ca.ca_set(str(other), local))
    assert len({none, one, both}) == 3
    # the real tag: base recipe, then the host's set with SHIPWAY_EXTRA_CA
    settings, _ = load_settings({}, environ={"SHIPWAY_EXTRA_CA": str(other)})
    assert settings.extra_ca == str(other)
    assert stack.stack_image_tag(settings) != stack.stack_image_tag(Settings())
    assert stack.stack_image_tag(settings).startswith(f"shipway/stack:{stack.recipe_version()}-ca")


def test_bad_extra_ca_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(stack_ca.TrustError, match="cannot read"):
        stack.stack_image_tag(Settings(extra_ca=str(tmp_path / "missing.pem")))
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    with pytest.raises(stack_ca.TrustError, match="holds no PEM certificate"):
        stack.stack_image_tag(Settings(extra_ca=str(tmp_path / "empty.pem")))
    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(stack_ca.TrustError, match="certificate 1 is not valid"):
        stack.stack_image_tag(Settings(extra_ca=str(tmp_path / "bad.pem")))


def test_stack_build_with_a_bad_extra_ca_says_so_in_one_line(tmp_path: Path) -> None:
    """The operator's command: one `Error:` line, exit 1, no traceback."""
    env = {**os.environ, "SHIPWAY_EXTRA_CA": str(tmp_path / "missing.pem"),
           "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "cli.main", "stack:build",
                           "--data-dir", str(tmp_path / "data")],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "Error: SHIPWAY_EXTRA_CA: cannot read" in done.stderr
