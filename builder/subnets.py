"""The subnet each Shipway network gets, chosen by Shipway from
SHIPWAY_NETWORK_POOL instead of Docker's default address pools.

Docker's defaults (172.17-31.0.0/16 and 192.168.0.0/16 in /20s) hold about
30 networks on the whole engine: with a network per app, a server with 50
apps would fail its deploys. So each network takes a small subnet
(SHIPWAY_NETWORK_PREFIX, /26 by default) of a private pool Docker does not
use by default: the first one that overlaps neither any Docker network of
the engine (every instance's, and anyone else's: their IPAM configs) nor a
route or interface network of the host. Two servers choosing at once may
pick the same subnet: Docker refuses the second ("overlaps"), and the caller
takes the next (networks.py).
"""
from __future__ import annotations

import ipaddress
import socket
import subprocess
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Network
from typing import Any

import psutil

from core.settings import Settings


class PoolExhausted(RuntimeError):
    """No subnet of the pool is free."""


def pool(settings: Settings) -> tuple[IPv4Network, int]:
    """The configured pool and prefix length, checked."""
    try:
        network = ipaddress.IPv4Network(settings.network_pool, strict=False)
    except ValueError as exc:
        raise ValueError(f"SHIPWAY_NETWORK_POOL is not an IPv4 network like 10.213.0.0/16: "
                         f"{settings.network_pool!r}") from exc
    prefix = int(settings.network_prefix)
    if not network.prefixlen <= prefix <= 29:
        raise ValueError(f"SHIPWAY_NETWORK_PREFIX must be between the pool's "
                         f"/{network.prefixlen} and /29: {prefix}")
    return network, prefix


def docker_subnets(client: Any) -> list[IPv4Network]:
    """The IPv4 subnets of every network of the engine."""
    found = []
    for network in client.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            found.extend(_parse([config.get("Subnet") or ""]))
    return found


def host_networks() -> list[IPv4Network]:
    """The host's interface networks and routes (the default route aside):
    a subnet overlapping one would shadow the host's own traffic."""
    addresses = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and addr.netmask:
                addresses.append(f"{addr.address}/{addr.netmask}")
    try:
        routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"],
                                capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        routes = ""
    for line in routes.splitlines():
        words = line.split()
        if words and words[0] in {"local", "broadcast", "unicast", "blackhole",
                                  "unreachable", "prohibit"} and len(words) > 1:
            words = words[1:]
        if words and words[0] != "default":
            addresses.append(words[0])
    return [n for n in _parse(addresses) if n.prefixlen > 0]


def _parse(texts: Iterable[str]) -> Iterator[IPv4Network]:
    for text in texts:
        try:
            yield ipaddress.IPv4Network(text, strict=False)
        except ValueError:
            continue  # IPv6, empty, or a word of another kind


def free_subnet(settings: Settings, taken: Iterable[IPv4Network]) -> IPv4Network:
    """The first subnet of the pool that overlaps nothing taken."""
    network, prefix = pool(settings)
    taken = sorted({t for t in taken if t.overlaps(network)})
    for candidate in network.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise PoolExhausted(
        f"no free /{prefix} subnet left in SHIPWAY_NETWORK_POOL {network} for another "
        f"container network ({len(taken)} networks or routes use it): widen the pool, "
        "or raise SHIPWAY_NETWORK_PREFIX for smaller subnets")


def gateway(subnet: IPv4Network) -> str:
    return str(next(subnet.hosts()))
