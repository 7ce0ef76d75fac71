"""Certificates from an ACME server (HTTP-01), with certbot's `acme` library.

The protocol is the library's; this module only chooses the keys, hands
each pending HTTP-01 answer to a responder (the router serves it under
`/.well-known/acme-challenge/` from a map changed at run time) and turns the
server's refusals into one readable line. It knows nothing of apps or the
database: the controller (controller/certificates.py) decides which names
need a certificate and stores what this returns.
"""
from __future__ import annotations

import datetime
from typing import Callable, Protocol

import attrs
import josepy as jose
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

USER_AGENT = "shipway"
ISSUE_TIMEOUT = 90.0


class IssueError(Exception):
    """The ACME server did not issue (the message says why, one line)."""


class ChallengeResponder(Protocol):
    def add_challenge(self, token: str, key_authorization: str) -> None: ...

    def remove_challenge(self, token: str) -> None: ...


@attrs.frozen
class Issued:
    hostname: str
    fullchain_pem: str
    key_pem: str
    not_before: datetime.datetime
    not_after: datetime.datetime

    @property
    def pem(self) -> str:
        """Chain then key: what the proxy loads."""
        return self.fullchain_pem.rstrip("\n") + "\n" + self.key_pem


def new_account_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def validity(fullchain_pem: str) -> tuple[datetime.datetime, datetime.datetime]:
    """not_before and not_after (UTC) of the leaf certificate."""
    leaf = x509.load_pem_x509_certificate(fullchain_pem.encode())
    return leaf.not_valid_before_utc, leaf.not_valid_after_utc


class ACMEClient:
    """One account on one ACME directory."""

    def __init__(self, directory_url: str, account_key_pem: str, email: str | None = None,
                 ca_bundle: str | None = None, timeout: float = ISSUE_TIMEOUT) -> None:
        self.directory_url, self.email, self.timeout = directory_url, email, timeout
        key = serialization.load_pem_private_key(account_key_pem.encode(), password=None)
        self._net = client.ClientNetwork(jose.JWKRSA(key=key), user_agent=USER_AGENT,
                                         verify_ssl=ca_bundle or True, timeout=30)
        self._client: client.ClientV2 | None = None

    def _acme(self) -> client.ClientV2:
        if self._client is None:
            try:
                directory = client.ClientV2.get_directory(self.directory_url, self._net)
                acme = client.ClientV2(directory, self._net)
                reg = messages.NewRegistration.from_data(
                    email=self.email, terms_of_service_agreed=True)
                try:
                    acme.new_account(reg)
                except errors.ConflictError as e:  # the key has an account already
                    self._net.account = messages.RegistrationResource(uri=e.location, body=reg)
            except Exception as e:
                raise IssueError(f"ACME directory {self.directory_url}: {_short(e)}") from None
            self._client = acme
        return self._client

    def issue(self, hostname: str, responder: ChallengeResponder,
              on_token: Callable[[str], None] | None = None) -> Issued:
        """Order, answer HTTP-01 through `responder`, finalize; raise IssueError."""
        acme = self._acme()
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        tokens: list[str] = []
        try:
            order = acme.new_order(crypto_util.make_csr(key_pem, [hostname]))
            for authz in order.authorizations:
                chall = next((c for c in authz.body.challenges
                              if isinstance(c.chall, challenges.HTTP01)), None)
                if chall is None:
                    raise IssueError(f"{hostname}: the ACME server offers no HTTP-01 challenge")
                response, validation = chall.response_and_validation(self._net.key)
                token = chall.chall.encode("token")
                responder.add_challenge(token, validation)
                tokens.append(token)
                if on_token:
                    on_token(token)
                acme.answer_challenge(chall, response)
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.timeout)
            order = acme.poll_and_finalize(order, deadline)
        except IssueError:
            raise
        except errors.ValidationError as e:
            raise IssueError(f"{hostname}: validation failed: {_validation_detail(e)}") from None
        except Exception as e:
            raise IssueError(f"{hostname}: {_short(e)}") from None
        finally:
            for token in tokens:
                try:
                    responder.remove_challenge(token)
                except Exception:
                    pass
        not_before, not_after = validity(order.fullchain_pem)
        return Issued(hostname=hostname, fullchain_pem=order.fullchain_pem,
                      key_pem=key_pem.decode(), not_before=not_before, not_after=not_after)


def _validation_detail(e: errors.ValidationError) -> str:
    for authzr in e.failed_authzrs:
        for c in authzr.body.challenges:
            if c.error is not None:
                return _short(c.error.detail or c.error.typ)
    return "the challenge was not answered"


def _short(e: object) -> str:
    """One line, bounded, without a traceback."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300]
