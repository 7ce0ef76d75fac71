"""Which release serves, as settling a crashed deploy asks it: the routed
running replicas' release; without a route, the running ones not being
stopped; None whenever that is not one release."""
from __future__ import annotations

from router.interface import Route
from runner.serving import serving_version


def route(*ports: int) -> Route:
    return Route(app="a", hostnames=["a.localhost"], upstreams=[("127.0.0.1", p) for p in ports])


def test_the_routed_replicas_release_serves_even_with_others_booting() -> None:
    replicas = [(1, "running", True, 101), (2, "running", False, 102), (3, "running", False, 103)]
    assert serving_version(replicas, route(102)) == 2


def test_routes_to_two_releases_or_to_nothing_running_prove_nothing() -> None:
    assert serving_version([(1, "running", False, 101), (2, "running", False, 102)],
                           route(101, 102)) is None
    assert serving_version([(1, "exited", False, 101)], route(101)) is None
    assert serving_version([(1, "running", True, 101)], route(101)) is None


def test_without_a_route_the_running_replicas_not_being_stopped_decide() -> None:
    assert serving_version([(1, "running", True, None), (2, "running", False, None)], None) == 2
    assert serving_version([(1, "running", False, None), (2, "running", False, None)], None) is None
    assert serving_version([], None) is None
