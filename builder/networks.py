"""The Docker networks Shipway's containers sit on, and the host firewall in
front of them: tenants never share a network.

- Each app's run containers sit on a bridge network of their own (made at
  the app's first deploy, removed when its last container is gone or the
  app is destroyed): they reach each other (clustering needs that), and
  Docker's isolation rules give no path between two such networks, nor to
  the default bridge.
- Builds sit on one network per server with inter-container traffic off
  (`enable_icc=false`): outbound access only.
- From any of these networks the host is reachable on the gateway port only
  (runner/gateway.py's listener: slugs and SSH keys), never on another port
  or address: an iptables chain of this server's own, jumped to from INPUT
  for every bridge whose name starts with the server's prefix.
- Nothing of these networks reaches the link-local range (169.254.0.0/16: a
  cloud host's metadata service and its credentials): a second chain,
  jumped to from Docker's DOCKER-USER (the FORWARD path), rejects it.

The gateway listener keeps one address, the default bridge's gateway: a
container on any bridge reaches every address of the host through its own
network's gateway (Linux delivers to a local address whatever the
interface), so no listener per network is needed.

Each network's subnet is chosen by Shipway from SHIPWAY_NETWORK_POOL
(builder/subnets.py), not from Docker's default pools (about 30 networks
on the whole engine).

Bridge interfaces are named by Shipway (`sw` + a hash of the instance, then
`a` + a hash of the app, or `b` for builds) instead of Docker's `br-<id>`,
so that one wildcard rule (`-i swXXXXX+`) covers every network of this
server, present or future, and two servers on one engine never collide.
Lives in `builder` (not `runner`) because both use it and the runner
already imports the builder's stack module, never the other way round.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
from typing import Any

import docker.errors
import docker.types
from twisted.logger import Logger

from builder import subnets
from core.settings import Settings

log = Logger()

ROLE_APP, ROLE_BUILD = "app-network", "build-network"
_lock = threading.Lock()
_CREATE_ATTEMPTS = 20  # subnets tried when others take theirs at the same moment
_firewalls: set[tuple[str, int]] = set()  # (instance, port) set up by this process


def _hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def bridge_prefix(settings: Settings) -> str:
    """The start of every bridge interface name of this server (7 chars)."""
    return "sw" + _hash(settings.instance, 5)


def chain_name(settings: Settings) -> str:
    """This server's iptables chain (iptables allows 28 characters)."""
    return "SHIPWAY-" + _hash(settings.instance, 12)


def forward_chain_name(settings: Settings) -> str:
    """This server's chain for what its containers send through the host."""
    return chain_name(settings) + "-FWD"


LINK_LOCAL = "169.254.0.0/16"  # cloud metadata services (169.254.169.254) live here


def app_network_name(settings: Settings, app: str) -> str:
    return f"shipway-{settings.instance}-app-{app}"


def build_network_name(settings: Settings) -> str:
    return f"shipway-{settings.instance}-build"


def _labels(settings: Settings, role: str, app: str | None = None) -> dict[str, str]:
    found = {"shipway.instance": settings.instance, "shipway.role": role}
    if app is not None:
        found["shipway.app"] = app
    return found


def _get(client: Any, name: str) -> Any | None:
    """The network of exactly that name (Docker's name filter matches parts)."""
    for network in client.networks.list(names=[name]):
        if network.name == name:
            return network
    return None


def _ensure(client: Any, settings: Settings, name: str, labels: dict[str, str],
            options: dict[str, str]) -> str:
    """Make the network on a subnet of SHIPWAY_NETWORK_POOL (builder/subnets.py)
    unless it exists. A subnet another server took meanwhile makes Docker
    refuse ("overlaps"): the next free one is tried."""
    with _lock:
        if _get(client, name) is not None:
            return name
        taken = subnets.docker_subnets(client) + subnets.host_networks()
        for _ in range(_CREATE_ATTEMPTS):
            subnet = subnets.free_subnet(settings, taken)  # PoolExhausted: said clearly
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                subnet=str(subnet), gateway=subnets.gateway(subnet))])
            try:
                client.networks.create(name, driver="bridge", labels=labels, options=options,
                                       ipam=ipam, check_duplicate=True)
                return name
            except docker.errors.APIError as exc:
                if _get(client, name) is not None:  # another process's creation
                    return name
                said = str(exc.explanation or exc)
                if "overlap" not in said.lower():
                    raise RuntimeError(f"could not create Docker network {name}: {said}") from exc
                taken = [*taken, subnet, *subnets.docker_subnets(client)]
        raise RuntimeError(f"could not create Docker network {name}: every subnet tried was "
                           "taken meanwhile by another network")


def ensure_app_network(client: Any, settings: Settings, app: str) -> str:
    """The app's own network, made if missing; its name."""
    ensure_firewall(settings)
    return _ensure(client, settings, app_network_name(settings, app),
                   _labels(settings, ROLE_APP, app),
                   {"com.docker.network.bridge.name": bridge_prefix(settings) + "a"
                    + _hash(app, 7)})


def ensure_build_network(client: Any, settings: Settings) -> str:
    """The builds' network (outbound only, no inter-container traffic)."""
    ensure_firewall(settings)
    return _ensure(client, settings, build_network_name(settings),
                   _labels(settings, ROLE_BUILD),
                   {"com.docker.network.bridge.name": bridge_prefix(settings) + "b",
                    "com.docker.network.bridge.enable_icc": "false"})


def remove_app_network(client: Any, settings: Settings, app: str) -> bool:
    """Remove the app's network if it has no container left; whether it is
    gone. A container still attached (being stopped) keeps it for a later
    sweep."""
    network = _get(client, app_network_name(settings, app))
    if network is None:
        return True
    try:
        network.remove()
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        log.info("runner: network of {app} kept for now: {error}", app=app,
                 error=str(exc.explanation or exc))
        return False
    return True


def app_networks(client: Any, settings: Settings) -> list[str]:
    """The apps that have a network of this server."""
    found = client.networks.list(filters={"label": [f"shipway.instance={settings.instance}",
                                                    f"shipway.role={ROLE_APP}"]})
    return [n.attrs.get("Labels", {}).get("shipway.app", "") for n in found]


# --- the host firewall ------------------------------------------------------------

def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True,
                          timeout=30, check=check)


def firewall_rules(settings: Settings) -> list[list[str]]:
    """The chain's rules, in order: answers to the containers' own
    connections, nothing of the host for builds, the gateway port for run
    containers, nothing else."""
    prefix = bridge_prefix(settings)
    return [
        ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-i", prefix + "b", "-j", "DROP"],
        ["-p", "tcp", "--dport", str(settings.http_port), "-j", "ACCEPT"],
        ["-j", "DROP"],
    ]


def forward_rules(settings: Settings) -> list[list[str]]:
    """What the containers may not reach through the host: the link-local
    range, where a cloud host's metadata service answers with its
    credentials. REJECT, not DROP: a connect fails at once, and the packet
    never leaves the machine."""
    return [["-d", LINK_LOCAL, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
            ["-d", LINK_LOCAL, "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]]


def _jump(settings: Settings, hook: str = "INPUT") -> list[str]:
    chain = chain_name(settings) if hook == "INPUT" else forward_chain_name(settings)
    return [hook, "-i", bridge_prefix(settings) + "+", "-m", "comment", "--comment",
            f"shipway instance {settings.instance}"[:255], "-j", chain]


def _install(chain: str, rules: list[list[str]], jump: list[str]) -> None:
    """The chain rewritten whole with `rules`, and `jump` to it first in its hook."""
    if _iptables("-n", "-L", chain, check=False).returncode != 0:
        _iptables("-N", chain)
    _iptables("-F", chain)
    for rule in rules:
        _iptables("-A", chain, *rule)
    if _iptables("-C", *jump, check=False).returncode != 0:
        _iptables("-I", *jump[:1], "1", *jump[1:])


def ensure_firewall(settings: Settings) -> bool:
    """Install this server's chains, idempotently (rewritten whole, so a
    changed port is taken): the INPUT one, and the one jumped to from
    Docker's DOCKER-USER (the FORWARD path) keeping containers from the
    link-local range. False, with a warning, where iptables cannot be used
    (not root): the networks still isolate tenants from each other, not from
    the host."""
    key = (settings.instance, settings.http_port)
    with _lock:
        if key in _firewalls:
            return True
        if shutil.which("iptables") is None:
            log.warn("runner: no iptables; containers can reach every port of the host")
            return False
        try:
            _install(chain_name(settings), firewall_rules(settings), _jump(settings))
            # DOCKER-USER: made by Docker, before its own FORWARD rules, for this.
            if _iptables("-n", "-L", "DOCKER-USER", check=False).returncode != 0:
                _iptables("-N", "DOCKER-USER")
                _iptables("-I", "FORWARD", "1", "-j", "DOCKER-USER")
            _install(forward_chain_name(settings), forward_rules(settings),
                     _jump(settings, "DOCKER-USER"))
        except (subprocess.SubprocessError, OSError) as exc:
            said = getattr(exc, "stderr", "") or str(exc)
            log.warn("runner: could not set up the host firewall for containers: {error}",
                     error=said.strip()[:300])
            return False
        _firewalls.add(key)
        return True


def remove_firewall(settings: Settings) -> None:
    """Remove this server's chains and jumps (for a server taken down for good)."""
    with _lock:
        for hook, chain in (("INPUT", chain_name(settings)),
                            ("DOCKER-USER", forward_chain_name(settings))):
            jump = _jump(settings, hook)
            while _iptables("-C", *jump, check=False).returncode == 0:
                _iptables("-D", *jump, check=False)
            _iptables("-F", chain, check=False)
            _iptables("-X", chain, check=False)
        _firewalls.discard((settings.instance, settings.http_port))


# --- build containers' writable areas ------------------------------------------------

def build_tmp_bytes(settings: Settings) -> int:
    """The build's /tmp tmpfs: a quarter of SHIPWAY_BUILD_DISK, 1 GiB at most."""
    from core.settings import docker_bytes

    return min(docker_bytes(settings.build_disk) // 4, 1024 ** 3)


def build_memory_bytes(settings: Settings) -> int:
    """build_memory plus the /tmp tmpfs, whose pages the cgroup is charged for."""
    from core.settings import docker_bytes

    memory = docker_bytes(settings.build_memory)
    return memory + build_tmp_bytes(settings) if memory > 0 else 0
