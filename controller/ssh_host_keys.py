"""Per-app SSH host keys for the replicas' sshd (`ps:ssh`).

Every replica of an app presents the same ed25519 host key, generated once by
Shipway and kept with the app's other secrets (encrypted). The API shows its
public half to the users of the app, and the CLI pins it: a connection that
ends anywhere but a replica of that app (another app's container that took
over a freed port, say) fails host key verification instead of receiving the
user's session. Inside a replica the key is readable by the app's own user,
like everything there: the pin proves "a replica of this app", which is what
its users are given access to.
"""
from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def new_host_key() -> str:
    """A new ed25519 private key in OpenSSH format (what sshd's HostKey reads)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()).decode()


def public_host_key(private_key: str) -> str:
    """"ssh-ed25519 AAAA..." for a key made by `new_host_key`."""
    key = serialization.load_ssh_private_key(private_key.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
