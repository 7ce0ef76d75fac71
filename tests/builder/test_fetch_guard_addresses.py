"""The address rule of the fetch guard, range by range: every kind of
address a push must not reach from the host is refused, public ones pass."""
from __future__ import annotations

import ipaddress

import pytest

from builder.fetch_guard import address_problem, host_addresses


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.254", "private"),
    ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("100.64.0.1", "non-public"), ("100.127.255.254", "non-public"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "reserved"), ("192.0.2.10", "private"),
    # IPv6 wrappers of a forbidden IPv4 address.
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"),
    ("2002:a9fe:a9fe::1", "link-local"),          # 6to4 of 169.254.169.254
    ("64:ff9b::a9fe:a9fe", "link-local"),         # NAT64 of 169.254.169.254
    ("64:ff9b::7f00:1", "loopback"),              # NAT64 of 127.0.0.1
])
def test_forbidden_ranges_are_refused(address: str, kind: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None and kind in problem, (address, problem)


@pytest.mark.parametrize("address", ["93.184.216.34", "151.101.0.223", "2606:4700::6810:84e5",
                                     "64:ff9b::5db8:d822"])  # NAT64 of a public one
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_the_hosts_own_addresses_are_refused_even_if_public() -> None:
    public = ipaddress.ip_address("93.184.216.34")
    assert address_problem(public, own={public}) == "an address of this host"


def test_host_addresses_include_loopback_and_every_interface() -> None:
    own = host_addresses()
    assert ipaddress.ip_address("127.0.0.1") in own
    assert len(own) >= 2  # loopback and at least one real interface (docker0 here)
