"""Which addresses a connection a user names may reach: the rule shared by
a push's fetches (builder/fetch_guard.py), log drains (logger/drains.py)
and webhooks. No loopback, private, link-local, multicast, reserved,
unspecified or host address unless the operator allows it
(`SHIPWAY_FETCH_ALLOW`: host or host:port, as the URL names it or as the
address it resolves to). Callers connect to the addresses `resolve_checked`
returned, so a DNS answer cannot change between the check and the connect.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Iterable
from urllib.parse import urlsplit

import attrs
import psutil

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def host_addresses() -> set[IPAddress]:
    """Every address on this host's interfaces (docker bridges included)."""
    found: set[IPAddress] = set()
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(ipaddress.ip_address(addr.address.split("%", 1)[0]))
                except ValueError:
                    continue
    return found


def address_problem(ip: IPAddress, own: Iterable[IPAddress] = ()) -> str | None:
    """What kind of address a fetch may not reach `ip` as, or None if it may.

    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo, NAT64's
    well-known prefix, which a NAT64 gateway turns into that IPv4 address)
    are judged by that address too."""
    checks: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        nat64 = (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if ip.ipv4_mapped or nat64:
            # Only a translation: what it reaches is the IPv4 address (the
            # wrapper itself sits in a range that is_reserved would refuse).
            checks = [ip.ipv4_mapped or nat64]  # type: ignore[list-item]
        embedded = [ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        checks += [each for each in embedded if each is not None]
    own = set(own)
    for each in checks:
        for kind, hit in (("a loopback", each.is_loopback), ("a link-local", each.is_link_local),
                          ("a multicast", each.is_multicast),
                          ("an unspecified", each.is_unspecified),
                          ("a reserved", each.is_reserved), ("a private", each.is_private),
                          ("a non-public", not each.is_global)):
            if hit:
                return f"{kind} address"
        if each in own:
            return "an address of this host"
    return None


def split_host_port(entry: str) -> tuple[str, int | None]:
    """"host", "host:port", "[v6]:port" or a bare IPv6 address."""
    entry = entry.strip().lower().rstrip(".")
    if entry.count(":") > 1 and not entry.startswith("["):
        return entry, None  # a bare IPv6 address
    parts = urlsplit(f"//{entry}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError(f"not a host or host:port: {entry!r}")
    return host, parts.port


def parse_allow(value: str) -> frozenset[tuple[str, int | None]]:
    """`fetch_allow` ("a.example, 10.0.0.5:8080, [fd00::1]:443") as
    (host, port or None for any port) pairs."""
    return frozenset(split_host_port(item) for item in value.split(",") if item.strip())


@attrs.frozen
class GuardRules:
    """What the guard lets through and how long it waits."""

    allow: frozenset[tuple[str, int | None]] = frozenset()
    connect_timeout: float = 10.0
    # A tunnel where nothing moves for this long is closed: a server that
    # accepts and then stays silent fails as fast as one that never answers.
    idle_timeout: float = 10.0

    def allows(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".").strip("[]")
        return (host, None) in self.allow or (host, port) in self.allow


class Refused(Exception):
    """A connection the guard will not make; the message is for the pusher."""


def resolve_checked(host: str, port: int, rules: GuardRules,
                    own: Iterable[IPAddress] | None = None) -> list[tuple]:
    """The socket addresses to connect to for host:port, each checked.

    Raises Refused when the name does not resolve or any address it resolves
    to is not allowed (a name with one public and one private answer is
    refused whole: which one a client would pick is the attacker's choice)."""
    bare = host.strip("[]")
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise Refused(f"{host}: host not found") from None
    if rules.allows(bare, port):
        return [info[4] for info in infos]
    own = host_addresses() if own is None else own
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if rules.allows(str(ip), port):
            continue
        problem = address_problem(ip, own)
        if problem:
            raise Refused(f"{host} resolves to {problem} "
                          "(set SHIPWAY_FETCH_ALLOW to allow it)")
    return [info[4] for info in infos]
