"""SSH keys: validation, fingerprints identical to `ssh-keygen -lf`, one
owner per key, the per-user limit."""
from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from controller.errors import BadRequest, Conflict, NotFound
from controller.keys import parse_public_key
from core.settings import Limits


def keygen(tmp_path: Path, kind: str, bits: int | None = None, comment: str = "me@host") -> Path:
    path = tmp_path / f"id_{kind}_{bits or 0}_{len(list(tmp_path.iterdir()))}"
    cmd = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)]
    if bits:
        cmd += ["-b", str(bits)]
    subprocess.run(cmd, check=True)
    return path


def ssh_keygen_fingerprint(pub: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], check=True, capture_output=True,
                          text=True).stdout.split()[1]


@pytest.mark.parametrize("kind,bits", [("ed25519", None), ("rsa", 2048), ("rsa", 3072),
                                       ("ecdsa", 256), ("ecdsa", 384), ("ecdsa", 521)])
def test_fingerprint_matches_ssh_keygen(store, owner, tmp_path, kind, bits):
    key = keygen(tmp_path, kind, bits)
    pub = key.with_suffix(".pub").read_text()
    added = store.add_ssh_key(owner, pub)
    assert added.fingerprint == ssh_keygen_fingerprint(key.with_suffix(".pub"))
    assert added.comment == "me@host"
    assert added.public_key == pub.strip()
    assert added.key_type == pub.split()[0]
    blob = base64.b64decode(pub.split()[1])
    assert store.user_for_ssh_key(blob) == owner
    assert store.list_ssh_keys(owner) == [added]


def test_unknown_blob_has_no_user(store, owner, tmp_path):
    pub = keygen(tmp_path, "ed25519").with_suffix(".pub").read_text()
    assert store.user_for_ssh_key(base64.b64decode(pub.split()[1])) is None


def test_private_key_is_refused(store, owner, tmp_path):
    key = keygen(tmp_path, "ed25519")
    with pytest.raises(BadRequest, match="private key"):
        store.add_ssh_key(owner, key.read_text())
    assert store.list_ssh_keys(owner) == []


def test_small_rsa_is_refused(store, owner, tmp_path):
    pub = keygen(tmp_path, "rsa", 1024).with_suffix(".pub").read_text()
    with pytest.raises(BadRequest, match="2048"):
        store.add_ssh_key(owner, pub)
    assert store.list_ssh_keys(owner) == []


@pytest.mark.parametrize("text", [
    "", "garbage", "ssh-ed25519", "ssh-ed25519 !!!notbase64!!!",
    "ssh-ed25519 " + base64.b64encode(b"random bytes that are not a key").decode(),
    "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
    "ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIN4e4ifB2l670EXFN3GKe3C73UAm1lb6boiWYdiATD8L",
    "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIN4e4ifB2l670EXFN3GKe3C73UAm1lb6boiWYdiATD8L x",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN4e4ifB2l670EXFN3GKe3C73UAm1lb6boiWYdiATD8L\n"
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN4e4ifB2l670EXFN3GKe3C73UAm1lb6boiWYdiATD8L",
    None, 123,
])
def test_garbage_is_refused(store, owner, text):
    with pytest.raises(BadRequest):
        store.add_ssh_key(owner, text)
    assert store.list_ssh_keys(owner) == []


def test_a_key_belongs_to_one_user(store, owner, tmp_path):
    other = store.signup("other@example.com", "a-long-password")[0]
    pub = keygen(tmp_path, "ed25519").with_suffix(".pub").read_text()
    store.add_ssh_key(owner, pub)
    with pytest.raises(Conflict):
        store.add_ssh_key(other, pub)
    # The same key with another comment is the same key.
    with pytest.raises(Conflict):
        store.add_ssh_key(owner, " ".join(pub.split()[:2]) + " renamed")
    assert store.list_ssh_keys(other) == []
    assert len(store.list_ssh_keys(owner)) == 1


def test_per_user_limit(open_store, tmp_path):
    store = open_store(limits=Limits(ssh_keys_per_user=2))
    user = store.signup("limit@example.com", "a-long-password")[0]
    pubs = [keygen(tmp_path, "ed25519").with_suffix(".pub").read_text() for _ in range(3)]
    store.add_ssh_key(user, pubs[0])
    store.add_ssh_key(user, pubs[1])
    with pytest.raises(BadRequest, match="limit"):
        store.add_ssh_key(user, pubs[2])
    assert len(store.list_ssh_keys(user)) == 2


def test_remove_by_id_or_fingerprint(store, owner, tmp_path):
    other = store.signup("other@example.com", "a-long-password")[0]
    a = store.add_ssh_key(owner, keygen(tmp_path, "ed25519").with_suffix(".pub").read_text())
    b = store.add_ssh_key(owner, keygen(tmp_path, "ed25519").with_suffix(".pub").read_text())
    with pytest.raises(NotFound):  # not theirs
        store.remove_ssh_key(other, str(a.id))
    store.remove_ssh_key(owner, str(a.id))
    store.remove_ssh_key(owner, b.fingerprint)
    assert store.list_ssh_keys(owner) == []
    with pytest.raises(NotFound):
        store.remove_ssh_key(owner, b.fingerprint)


def test_parse_keeps_one_normalised_line():
    parsed = parse_public_key(
        "  ssh-ed25519   AAAAC3NzaC1lZDI1NTE5AAAAIN4e4ifB2l670EXFN3GKe3C73UAm1lb6boiWYdiATD8L"
        "   my laptop  \n")
    assert parsed.comment == "my laptop"
    assert parsed.line.startswith("ssh-ed25519 AAAAC3Nza")
    assert parsed.line.endswith(" my laptop")
