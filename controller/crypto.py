"""Secrets kept outside the database: the master keyring that encrypts config
at rest (AES-256-GCM), and the HMAC secret API keys are derived from.

Ciphertext format: ``v1:<key id>:<base64(nonce | ciphertext+tag)>``. The key
id lets rotation proceed row by row: while it runs, the keyring holds the old
and the new key and either decrypts. Associated data (``aad``) binds each
ciphertext to its place (app, variable), so a ciphertext copied into another
app's row fails to decrypt instead of leaking there.

The keyring file (``master.keys`` in the data dir, 0600) is small JSON:
``{"current": "<id>", "keys": {"<id>": "<base64 key>", ...}}``. It is
rewritten atomically (temp file + rename) and re-read whenever it changes on
disk, so a `shipway server rotate-key` run beside a live server is seen.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controller.errors import BadRequest
from core.private_files import create_private_once, write_private

KEYRING_FILE = "master.keys"
API_KEY_SECRET_FILE = "api-key.secret"
_FORMAT = "v1"


class DecryptError(RuntimeError):
    """A ciphertext that no key in the keyring opens (not a user error)."""


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"shipway-key-id:" + key).hexdigest()[:12]


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError(f"{where}: not base64") from None
    if len(key) != 32:
        raise ValueError(f"{where}: expected 32 bytes (AES-256), got {len(key)}")
    return key


class Keyring:
    """Master keys by id; encrypts under the current one."""

    def __init__(self, data_dir: Path, env_key: str | None = None) -> None:
        self.path = data_dir / KEYRING_FILE
        self._lock = threading.RLock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, bytes] = {}
        self._current = ""
        self._env = env_key is not None
        if env_key is not None:
            key = _decode_key(env_key, "SHIPWAY_MASTER_KEY")
            if self.path.exists():  # keys from the file still decrypt old values
                self._load()
            self._current = _key_id(key)
            self._keys = {**self._keys, self._current: key}
        else:
            self._load(create=True)

    # --- the file ---------------------------------------------------------
    def _load(self, create: bool = False) -> None:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                if not create:
                    raise
                key = AESGCM.generate_key(bit_length=256)
                kid = _key_id(key)
                self._write(kid, {kid: key}, exclusive=True)
                st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            doc = json.loads(self.path.read_text())
            keys = {kid: _decode_key(k, f"{self.path} key {kid}") for kid, k in doc["keys"].items()}
            if doc["current"] not in keys:
                raise ValueError(f"{self.path}: current key {doc['current']} is missing")
            self._keys, self._current, self._stamp = keys, doc["current"], stamp

    def _write(self, current: str, keys: dict[str, bytes], exclusive: bool = False) -> None:
        doc = {"current": current,
               "keys": {kid: base64.b64encode(k).decode() for kid, k in keys.items()}}
        data = (json.dumps(doc, indent=1) + "\n").encode()
        if exclusive:
            # Two processes opening a new data dir at once must agree on one key.
            create_private_once(self.path, data)
            return
        write_private(self.path, data)

    def _refresh(self) -> None:
        if not self._env:
            self._load()

    # --- use ----------------------------------------------------------------
    @property
    def current_id(self) -> str:
        with self._lock:
            self._refresh()
            return self._current

    def key_ids(self) -> list[str]:
        with self._lock:
            self._refresh()
            return sorted(self._keys)

    def encrypt(self, plaintext: str, aad: str) -> str:
        with self._lock:
            self._refresh()
            kid, key = self._current, self._keys[self._current]
        nonce = os.urandom(12)
        ct = AESGCM(key).encrypt(nonce, plaintext.encode(), aad.encode())
        return f"{_FORMAT}:{kid}:{base64.b64encode(nonce + ct).decode()}"

    def decrypt(self, token: str, aad: str) -> str:
        try:
            fmt, kid, body = token.split(":", 2)
        except ValueError:
            raise DecryptError("malformed ciphertext") from None
        if fmt != _FORMAT:
            raise DecryptError(f"unknown ciphertext format {fmt!r}")
        with self._lock:
            if kid not in self._keys:
                self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise DecryptError(f"master key {kid} is not in the keyring")
        raw = base64.b64decode(body)
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], aad.encode()).decode()
        except InvalidTag:
            raise DecryptError(f"ciphertext does not open with key {kid} here") from None

    def needs_reencrypt(self, token: str) -> bool:
        return token.split(":", 2)[1:2] != [self.current_id]

    # --- rotation -------------------------------------------------------------
    def begin_rotation(self) -> str:
        """Add a new key and make it current; the old keys stay to decrypt."""
        if self._env:
            raise BadRequest("the master key comes from SHIPWAY_MASTER_KEY; rotate it by "
                             "unsetting it and using the key file (master.keys) instead")
        with self._lock:
            self._load()
            key = AESGCM.generate_key(bit_length=256)
            kid = _key_id(key)
            keys = dict(self._keys)
            keys[kid] = key
            self._write(kid, keys)
            self._load()
            return kid

    def finish_rotation(self) -> list[str]:
        """Retire every key but the current one; returns the retired ids."""
        with self._lock:
            self._load()
            retired = [kid for kid in self._keys if kid != self._current]
            self._write(self._current, {self._current: self._keys[self._current]})
            self._load()
            return retired


def load_api_key_secret(data_dir: Path, given: str | None) -> bytes:
    """The HMAC secret API keys derive from: the setting, or a 0600 file made
    on first use. Losing it invalidates every API key (users log in again)."""
    if given:
        return given.encode()
    path = data_dir / API_KEY_SECRET_FILE
    if not path.exists():
        create_private_once(path, base64.b64encode(os.urandom(32)) + b"\n")
    return path.read_bytes().strip()
