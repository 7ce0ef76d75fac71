"""Who may claim a hostname: registrable domains (eTLD+1) from the Public
Suffix List, and the DNS TXT challenge of SHIPWAY_DOMAIN_VERIFY=dns.

The list is `publicsuffixlist`'s bundled snapshot (ICANN and private
sections), read offline: no fetch at start or at run time. A name whose
suffix is not in the list (`a-corp.test`, `x.internal`) falls under the
list's default rule `*`, so its registrable domain is its last two labels.
"""
from __future__ import annotations

import functools
import hashlib
import hmac

from controller.errors import BadRequest

CHALLENGE_LABEL = "_shipway-challenge"


@functools.lru_cache(maxsize=1)
def _psl() -> object:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()  # the bundled snapshot; never downloads


def registrable_domain(host: str) -> str:
    """The eTLD+1 of a checked, lower-case hostname. A name that is itself a
    public suffix (`co.uk`, `github.io`) cannot be claimed at all: it would
    hold every tenant's names under it."""
    found = _psl().privatesuffix(host)  # type: ignore[attr-defined]
    if not found:
        raise BadRequest(f"{host} is a public suffix: add a name under it")
    return str(found)


def challenge_name(host: str) -> str:
    return f"{CHALLENGE_LABEL}.{host}"


def challenge_token(secret: bytes, app_id: int, host: str) -> str:
    """The TXT value proving `host` for one app: derived, not stored, and
    different per app, so a record made for one app proves nothing for
    another."""
    mac = hmac.new(secret, f"domain-challenge:{app_id}:{host}".encode(), hashlib.sha256)
    return "shipway-verify=" + mac.hexdigest()[:40]


def txt_values(name: str, server: str | None, timeout: float = 5.0) -> tuple[list[str], str]:
    """The TXT strings at `name` and, when there are none, why (for the
    user's error). `server` is "host[:port]" (SHIPWAY_DNS_SERVER: a private
    resolver, or a test's), else the system's resolvers."""
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=server is None)
    if server:
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        resolver.nameservers = [host or server]
        resolver.port = int(port) if port else 53
    resolver.lifetime = timeout
    resolver.timeout = timeout
    try:
        answer = resolver.resolve(name, "TXT")
    except dns.resolver.NXDOMAIN:
        return [], "no such name"
    except dns.resolver.NoAnswer:
        return [], "no TXT record"
    except dns.exception.Timeout:
        return [], "the DNS lookup timed out"
    except dns.exception.DNSException as e:
        return [], f"the DNS lookup failed ({e.__class__.__name__})"
    values = [b"".join(r.strings).decode("ascii", "replace") for r in answer]
    return values, ""
