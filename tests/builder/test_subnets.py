"""Each Shipway network gets a small subnet of SHIPWAY_NETWORK_POOL chosen
by Shipway (builder/subnets.py), not one of Docker's default pools (the choice
alone; tests/e2e/builder/test_subnets.py makes the networks on the engine)."""
from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from builder import subnets
from core.settings import Settings


def _settings(pool: str = "10.213.0.0/16", prefix: int = 26) -> Settings:
    return Settings(instance="t", network_pool=pool, network_prefix=prefix)


def test_the_first_subnet_overlapping_nothing_taken_is_chosen() -> None:
    settings = _settings("10.213.0.0/24", 26)
    assert subnets.free_subnet(settings, []) == IPv4Network("10.213.0.0/26")
    taken = [IPv4Network("10.213.0.0/26"), IPv4Network("10.213.0.70/32"),
             IPv4Network("172.17.0.0/16")]
    assert subnets.free_subnet(settings, taken) == IPv4Network("10.213.0.128/26")
    # a route covering the whole pool leaves nothing
    with pytest.raises(subnets.PoolExhausted, match="SHIPWAY_NETWORK_POOL 10.213.0.0/24"):
        subnets.free_subnet(settings, [IPv4Network("10.0.0.0/8")])


def test_a_bad_pool_or_prefix_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="SHIPWAY_NETWORK_POOL"):
        subnets.pool(_settings("not-a-net"))
    with pytest.raises(ValueError, match="SHIPWAY_NETWORK_PREFIX"):
        subnets.pool(_settings("10.213.0.0/16", 12))


def test_the_hosts_routes_and_interfaces_are_found() -> None:
    found = subnets.host_networks()
    assert any(n.overlaps(IPv4Network("127.0.0.0/8")) for n in found)  # lo
    assert IPv4Network("0.0.0.0/0") not in found  # the default route aside
