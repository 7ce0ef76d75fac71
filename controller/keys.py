"""SSH public keys: parsing authorized_keys lines, fingerprints exactly as
`ssh-keygen -lf` prints them (SHA256:<base64 without padding>), and the rule
that a key belongs to at most one user (the fingerprint is unique)."""
from __future__ import annotations

import base64
import binascii
import hashlib

import attrs
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from twisted.conch.ssh import keys as conch_keys

from controller.access import lock_user
from controller.base import StoreBase
from controller.db import now, ssh_keys, users
from controller.errors import BadRequest, Conflict, NotFound
from controller.revocation import Revocation
from controller.models import SshKey, User

MIN_RSA_BITS = 2048
MAX_LINE = 16 * 1024
# DSA is refused (OpenSSH disabled it); FIDO "sk-" keys are accepted as-is.
KEY_TYPES = {
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}


@attrs.frozen
class ParsedKey:
    key_type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)

    @property
    def line(self) -> str:
        text = f"{self.key_type} {base64.b64encode(self.blob).decode()}"
        return f"{text} {self.comment}" if self.comment else text


def fingerprint(blob: bytes) -> str:
    """`ssh-keygen -l` style: SHA256 of the wire blob, base64, no padding."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _blob_type(blob: bytes) -> str:
    if len(blob) < 4:
        raise BadRequest("invalid SSH public key: truncated key data")
    n = int.from_bytes(blob[:4], "big")
    if n > 64 or len(blob) < 4 + n:
        raise BadRequest("invalid SSH public key: malformed key data")
    return blob[4:4 + n].decode("ascii", "replace")


def parse_public_key(text: object) -> ParsedKey:
    """One authorized_keys line "<type> <base64> [comment]" (no options)."""
    if not isinstance(text, str):
        raise BadRequest("public key must be a string")
    if "PRIVATE KEY" in text:
        raise BadRequest("that is a private key; add the public key (the .pub file) instead")
    if len(text) > MAX_LINE:
        raise BadRequest("invalid SSH public key: too long")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) != 1:
        raise BadRequest("expected exactly one SSH public key line")
    parts = lines[0].split(None, 2)
    if len(parts) < 2:
        raise BadRequest("invalid SSH public key: expected '<type> <base64> [comment]'")
    key_type, data = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    if key_type not in KEY_TYPES:
        if key_type == "ssh-dss":
            raise BadRequest("DSA keys are not accepted; use an ed25519 or RSA (2048+) key")
        raise BadRequest(f"invalid SSH public key: unsupported key type {key_type[:40]!r}")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("invalid SSH public key: key data is not base64") from None
    if _blob_type(blob) != key_type:
        raise BadRequest("invalid SSH public key: the key data does not match its type")
    if not key_type.startswith("sk-"):
        try:
            key = conch_keys.Key.fromString(blob)
        except Exception:
            raise BadRequest("invalid SSH public key: the key data does not parse") from None
        if not key.isPublic():
            raise BadRequest("that is a private key; add the public key instead")
        if key.type() == "RSA" and key.size() < MIN_RSA_BITS:
            raise BadRequest(f"RSA keys must have at least {MIN_RSA_BITS} bits "
                             f"(this one has {key.size()})")
    if len(comment) > 255 or any(ord(c) < 32 for c in comment):
        raise BadRequest("invalid SSH public key: bad comment")
    return ParsedKey(key_type=key_type, blob=blob, comment=comment)


def _ssh_key(row: object) -> SshKey:
    return SshKey(id=row.id, user_id=row.user_id, fingerprint=row.fingerprint,
                  key_type=row.key_type, public_key=row.public_key,
                  comment=row.comment, created_at=row.created_at)


class KeysMixin(StoreBase):
    def list_ssh_keys(self, user: User) -> list[SshKey]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(ssh_keys).where(ssh_keys.c.user_id == user.id)
                                .order_by(ssh_keys.c.id)).all()
        return [_ssh_key(r) for r in rows]

    def add_ssh_key(self, user: User, public_key: str) -> SshKey:
        parsed = parse_public_key(public_key)
        limit = self.settings.limits.ssh_keys_per_user
        try:
            with self.db.write() as conn:
                lock_user(conn, user)
                taken = conn.execute(sa.select(ssh_keys.c.user_id).where(
                    ssh_keys.c.fingerprint == parsed.fingerprint)).first()
                if taken:
                    raise Conflict("this SSH key is already in use"
                                   + (" on your account" if taken.user_id == user.id else ""))
                count = conn.execute(sa.select(sa.func.count()).select_from(ssh_keys)
                                     .where(ssh_keys.c.user_id == user.id)).scalar_one()
                if count >= limit:
                    raise BadRequest(f"too many SSH keys (the limit is {limit} per user)")
                key_id = conn.execute(ssh_keys.insert().values(
                    user_id=user.id, fingerprint=parsed.fingerprint, key_type=parsed.key_type,
                    public_key=parsed.line, comment=parsed.comment, created_at=now(),
                )).inserted_primary_key[0]
                row = conn.execute(sa.select(ssh_keys).where(ssh_keys.c.id == key_id)).one()
        except IntegrityError:
            raise Conflict("this SSH key is already in use") from None
        return _ssh_key(row)

    def remove_ssh_key(self, user: User, key_id_or_fingerprint: str) -> None:
        ident = str(key_id_or_fingerprint).strip()
        where = ssh_keys.c.fingerprint == ident
        if ident.isascii() and ident.isdigit() and len(ident) < 10:
            where = ssh_keys.c.id == int(ident)
        elif not ident.startswith("SHA256:"):
            where = ssh_keys.c.fingerprint == "SHA256:" + ident
        with self.db.write() as conn:
            gone = conn.execute(sa.select(ssh_keys.c.fingerprint).where(
                where, ssh_keys.c.user_id == user.id)).scalars().all()
            done = conn.execute(ssh_keys.delete().where(where, ssh_keys.c.user_id == user.id))
        if not done.rowcount:
            raise NotFound(f"no SSH key {ident[:80]} on your account")
        for found in gone:  # sessions opened with the key end (issue 14)
            self._revoked(Revocation(user_id=user.id, key_fingerprint=found))

    def user_for_ssh_key(self, key_blob: bytes) -> User | None:
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(users).join(ssh_keys, ssh_keys.c.user_id == users.c.id)
                .where(ssh_keys.c.fingerprint == fingerprint(bytes(key_blob)))).first()
        return self._user(row) if row else None
