"""Users, passwords and API keys.

Passwords are hashed with argon2id. The API key is one per user and is never
stored: it is ``sw_`` + base64url(HMAC-SHA256(server secret, "<id>:<salt>")),
so login can show it again while the database holds only the per-user salt
and the key's SHA-256 (for lookup). A reset draws a new salt: the old key's
hash no longer matches anything at once. A database leak alone reveals no key.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from typing import Callable, TypeVar

import argon2
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from controller.base import StoreBase
from controller.db import now, users
from controller.errors import BadRequest, Conflict, Unauthorized
from controller.login_throttle import LoginThrottle
from controller.models import User
from controller.revocation import RevocationHooks

T = TypeVar("T")
_throttle_guard = threading.Lock()

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}\Z|"
                      r"^[^@\s]{1,64}@localhost\Z")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# OWASP's argon2id setting (19 MiB, 2 passes, 1 lane): still slow for an
# attacker, but it does not hog a small server's cores on every login the way
# the library default (64 MiB, 4 lanes) does. Old hashes are upgraded on login.
_hasher = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
# Verified against when the email is unknown, so both paths cost the same.
_DUMMY_HASH = _hasher.hash("shipway-no-such-user")


def normalize_email(email: object) -> str:
    if not isinstance(email, str):
        raise BadRequest("email must be a string")
    email = email.strip().lower()
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise BadRequest(f"invalid email address: {email[:100]!r}")
    return email


def _check_password(password: object) -> str:
    if not isinstance(password, str):
        raise BadRequest("password must be a string")
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise BadRequest(f"password must be at most {MAX_PASSWORD} characters")
    return password


def _key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class UsersMixin(RevocationHooks, StoreBase):
    @property
    def throttle(self) -> LoginThrottle:
        """The one throttle of failed logins of this controller: every path
        that checks a password or an API key goes through `_throttled`."""
        found = self.__dict__.get("_login_throttle")
        if found is None:
            with _throttle_guard:
                found = self.__dict__.setdefault("_login_throttle",
                                                 LoginThrottle.from_settings(self.settings))
        return found

    def _throttled(self, account: str | None, client: str | None, check: Callable[[], T]) -> T:
        """Refuse (429) while locked, else run `check` and count an
        Unauthorized as a failure of the account and the client address."""
        account = account if isinstance(account, str) else None
        self.throttle.check(account, client)
        try:
            result = check()
        except Unauthorized:
            self.throttle.failed(account, client)
            raise
        self.throttle.succeeded(account)
        return result

    def _api_key(self, user_id: int, salt: str) -> str:
        mac = hmac.new(self.api_key_secret, f"{user_id}:{salt}".encode(), hashlib.sha256)
        return "sw_" + base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    def signup(self, email: str, password: str) -> tuple[User, str]:
        email = normalize_email(email)
        password_hash = _hasher.hash(_check_password(password))
        salt = secrets.token_hex(16)
        try:
            with self.db.write() as conn:
                if conn.execute(sa.select(users.c.id).where(users.c.email == email)).first():
                    raise Conflict(f"a user with email {email} already exists")
                # The key depends on the id, known only after the insert: insert
                # with a throwaway unique hash, then set the real one.
                user_id = conn.execute(users.insert().values(
                    email=email, password_hash=password_hash, api_key_salt=salt,
                    api_key_hash="pending-" + secrets.token_hex(16), created_at=now(),
                )).inserted_primary_key[0]
                key = self._api_key(user_id, salt)
                conn.execute(users.update().where(users.c.id == user_id)
                             .values(api_key_hash=_key_hash(key)))
                row = conn.execute(sa.select(users).where(users.c.id == user_id)).one()
        except IntegrityError:
            raise Conflict(f"a user with email {email} already exists") from None
        return self._user(row), key

    def login(self, email: str, password: str, client: str | None = None) -> tuple[User, str]:
        if not isinstance(email, str) or not isinstance(password, str):
            raise Unauthorized("wrong email or password")
        return self._throttled(email, client, lambda: self._login(email, password))

    def _login(self, email: str, password: str) -> tuple[User, str]:
        with self.db.read() as conn:
            row = conn.execute(sa.select(users).where(
                users.c.email == email.strip().lower())).first()
        try:
            _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
        except argon2.exceptions.VerificationError:
            raise Unauthorized("wrong email or password") from None
        except argon2.exceptions.InvalidHashError:
            raise Unauthorized("wrong email or password") from None
        if row is None:
            raise Unauthorized("wrong email or password")
        if _hasher.check_needs_rehash(row.password_hash):
            with self.db.write() as conn:
                conn.execute(users.update().where(users.c.id == row.id)
                             .values(password_hash=_hasher.hash(password)))
        return self._user(row), self._api_key(row.id, row.api_key_salt)

    def user_for_api_key(self, api_key: str, client: str | None = None) -> User:
        return self._throttled(None, client, lambda: self._user_for_api_key(api_key))

    def _user_for_api_key(self, api_key: str) -> User:
        if not isinstance(api_key, str) or not api_key.startswith("sw_") or len(api_key) > 100:
            raise Unauthorized("invalid API key")
        with self.db.read() as conn:
            row = conn.execute(sa.select(users).where(
                users.c.api_key_hash == _key_hash(api_key))).first()
        if row is None or not hmac.compare_digest(self._api_key(row.id, row.api_key_salt),
                                                  api_key):
            raise Unauthorized("invalid API key")
        return self._user(row)

    def user_for_email_and_key(self, email: str, api_key: str,
                               client: str | None = None) -> User:
        # Per address only: an API key is a long random secret, not worth
        # guessing, and locking the account on its failures would let anyone
        # who knows an email stop that user's pushes and API calls.
        return self._throttled(None, client,
                               lambda: self._user_for_email_and_key(email, api_key))

    def _user_for_email_and_key(self, email: str, api_key: str) -> User:
        if not isinstance(email, str) or not isinstance(api_key, str):
            raise Unauthorized("wrong email or API key")
        with self.db.read() as conn:
            row = conn.execute(sa.select(users).where(
                users.c.email == email.strip().lower())).first()
        if row is None or not hmac.compare_digest(
                self._api_key(row.id, row.api_key_salt).encode(), api_key.encode()):
            raise Unauthorized("wrong email or API key")
        return self._user(row)

    def reset_api_key(self, user: User) -> str:
        salt = secrets.token_hex(16)
        key = self._api_key(user.id, salt)
        with self.db.write() as conn:
            done = conn.execute(users.update().where(users.c.id == user.id).values(
                api_key_salt=salt, api_key_hash=_key_hash(key))).rowcount
        if not done:
            raise Unauthorized("this user no longer exists")
        return key

    def user_by_email(self, email: str) -> User | None:
        """Internal lookup (no permission check)."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(users).where(
                users.c.email == email.strip().lower())).first()
        return self._user(row) if row else None
