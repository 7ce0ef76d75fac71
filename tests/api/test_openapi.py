"""The OpenAPI document the server serves matches the route table in both
directions and is a valid OpenAPI 3 document."""
from __future__ import annotations

from openapi_spec_validator import validate

from controller.api_routes import ROUTES


def test_openapi_matches_routes(shipway_server) -> None:
    r = shipway_server.api().get("/api/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    assert doc["servers"] == [{"url": "/api"}]

    documented = {(method.upper(), path) for path, item in doc["paths"].items()
                  for method in item if method in {"get", "put", "post", "patch", "delete"}}
    routed = {(route.method, route.path) for route in ROUTES}
    assert documented - routed == set(), "documented but not routed"
    assert routed - documented == set(), "routed but not documented"

    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        # Public routes say so; the rest inherit the global bearer/basic security.
        assert (op.get("security") == []) == (not route.auth), route.path
        assert str(route.status) in op["responses"], (route.path, route.status)
        if route.auth:
            assert "401" in op["responses"], route.path
        # Every {param} in the path is declared.
        declared = {p.get("name") or p["$ref"].rsplit("/", 1)[-1].lower()
                    for p in doc["paths"][route.path].get("parameters", [])}
        wanted = {seg[1:-1] for seg in route.segments if seg.startswith("{")}
        assert wanted <= declared, (route.path, wanted, declared)
