"""Each Shipway network gets a small subnet of SHIPWAY_NETWORK_POOL chosen
by Shipway (builder/subnets.py), not one of Docker's default pools, which
hold about 30 networks on the whole engine: a server with 50 apps failed
its deploys ("could not find an available, non-overlapping IPv4 address
pool"). Here the networks are made on the engine; the choice alone is
tests/builder/test_subnets.py."""
from __future__ import annotations

import uuid
from ipaddress import IPv4Network

import pytest

from builder import networks
from core.settings import Settings


@pytest.mark.docker
def test_more_networks_than_dockers_default_pools_hold_without_overlap() -> None:
    import docker

    client = docker.from_env()
    settings = Settings(instance=f"subnets-{uuid.uuid4().hex[:8]}")
    apps = [f"app{i}" for i in range(40)]
    try:
        for app in apps:
            networks.ensure_app_network(client, settings, app)
        networks.ensure_build_network(client, settings)
        made = client.networks.list(filters={"label": f"shipway.instance={settings.instance}"})
        assert len(made) == 41
        ours = [IPv4Network(c["Subnet"]) for n in made for c in n.attrs["IPAM"]["Config"]]
        assert len(ours) == 41
        pool = IPv4Network(settings.network_pool)
        assert all(s.subnet_of(pool) and s.prefixlen == settings.network_prefix for s in ours)
        others = [IPv4Network(c["Subnet"]) for n in client.networks.list()
                  if n.attrs.get("Labels", {}).get("shipway.instance") != settings.instance
                  for c in (n.attrs.get("IPAM") or {}).get("Config") or [] if "." in c["Subnet"]]
        for i, subnet in enumerate(ours):
            assert not any(subnet.overlaps(o) for o in ours[i + 1:] + others), subnet
        # made again: the same network, no second one
        networks.ensure_app_network(client, settings, apps[0])
        assert len(client.networks.list(
            filters={"label": f"shipway.instance={settings.instance}"})) == 41
    finally:
        for network in client.networks.list(
                filters={"label": f"shipway.instance={settings.instance}"}):
            network.remove()
        networks.remove_firewall(settings)
