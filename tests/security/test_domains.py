"""Issue 14, finding 7: domains without proof. With www.a-corp.test on A's
app, account B added a-corp.test and new.a-corp.test and the router served
B's app for them. Replayed against a real `shipway server` through the API;
the DNS-proof mode against a real DNS server (dnslib) on loopback."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.conftest import free_port, unique


def make_app(user) -> str:
    name = unique("dom")
    r = user.api.post("/api/apps", json={"name": name})
    assert r.status_code == 201, r.text
    return name


def add(user, app: str, host: str):
    return user.api.post(f"/api/apps/{app}/domains", json={"hostname": host})


def test_another_account_cannot_take_names_of_a_registrable_domain(shipway_server) -> None:
    a, b = shipway_server.signup(), shipway_server.signup()
    a_app, b_app = make_app(a), make_app(b)
    assert add(a, a_app, "www.a-corp.test").status_code == 201

    for attempt in ("a-corp.test", "new.a-corp.test", "WWW.A-Corp.test.", "x.y.a-corp.test"):
        r = add(b, b_app, attempt)
        assert r.status_code == 409, (attempt, r.text)
        assert r.json()["error"] == "a-corp.test belongs to another account", r.text
    assert b.api.get(f"/api/apps/{b_app}/domains").json() == []
    assert b.api.get(f"/api/apps/{b_app}").json()["domains"] == []

    # The holder adds more names of its own domain, on any of its apps.
    assert add(a, a_app, "api.a-corp.test").status_code == 201
    assert add(a, make_app(a), "a-corp.test").status_code == 201
    # An unrelated domain is B's to take.
    assert add(b, b_app, "b-corp.test").status_code == 201
    assert add(a, a_app, "shop.b-corp.test").json()["error"] == \
        "b-corp.test belongs to another account"


def test_collaborator_adds_for_the_owner_not_for_itself(shipway_server) -> None:
    """Chosen rule: the account that holds a name is the owner of the app
    it is on. A collaborator of A's app adds names to A's app; on its own
    app it is another account."""
    a, b = shipway_server.signup(), shipway_server.signup()
    a_app, b_app = make_app(a), make_app(b)
    assert a.api.post(f"/api/apps/{a_app}/collaborators",
                      json={"email": b.email}).status_code == 201
    assert add(a, a_app, "www.c-corp.test").status_code == 201
    assert add(b, a_app, "shop.c-corp.test").status_code == 201
    assert add(b, b_app, "blog.c-corp.test").status_code == 409


def test_public_suffixes_from_the_list(shipway_server) -> None:
    """co.uk is a public suffix: a.co.uk and b.co.uk are different
    registrable domains; github.io (the list's private section) too."""
    a, b = shipway_server.signup(), shipway_server.signup()
    a_app, b_app = make_app(a), make_app(b)
    suffix = unique("s")  # names unique to this run, on the shared server
    assert add(a, a_app, f"shop.{suffix}.co.uk").status_code == 201
    assert add(b, b_app, f"{suffix}b.co.uk").status_code == 201
    r = add(b, b_app, f"x.{suffix}.co.uk")
    assert r.status_code == 409 and r.json()["error"] == \
        f"{suffix}.co.uk belongs to another account"
    assert add(a, a_app, f"{suffix}.github.io").status_code == 201
    assert add(b, b_app, f"{suffix}b.github.io").status_code == 201
    for public in ("co.uk", "github.io"):
        r = add(b, b_app, public)
        assert r.status_code == 400 and "public suffix" in r.json()["error"], r.text


# --- SHIPWAY_DOMAIN_VERIFY=dns, against a real DNS server -------------------------

class TxtZone:
    """A real DNS server (dnslib) on 127.0.0.1 answering TXT records the
    test puts in `records`; NXDOMAIN for the rest."""

    def __init__(self) -> None:
        from dnslib import QTYPE, RCODE, RR, TXT
        from dnslib.server import BaseResolver, DNSServer

        self.records: dict[str, str] = {}
        self.queries: list[str] = []
        zone = self

        class Resolver(BaseResolver):
            def resolve(self, request, handler):  # noqa: ANN001
                reply = request.reply()
                name = str(request.q.qname).rstrip(".").lower()
                zone.queries.append(name)
                if request.q.qtype == QTYPE.TXT and name in zone.records:
                    reply.add_answer(RR(request.q.qname, QTYPE.TXT, ttl=0,
                                        rdata=TXT(zone.records[name])))
                else:
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply

        self.port = free_port()
        self.server = DNSServer(Resolver(), port=self.port, address="127.0.0.1")

    def start(self) -> "TxtZone":
        self.server.start_thread()
        return self

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def zone() -> Iterator[TxtZone]:
    z = TxtZone().start()
    yield z
    z.stop()


def test_dns_verify_mode(make_server, zone: TxtZone) -> None:
    server = make_server(env={"SHIPWAY_DOMAIN_VERIFY": "dns",
                              "SHIPWAY_DNS_SERVER": f"127.0.0.1:{zone.port}"})
    a, b = server.signup(), server.signup()
    a_app, b_app = make_app(a), make_app(b)

    # B claims first but cannot prove it: the name is not routed, and an
    # unproven claim holds nothing against the real owner.
    r = add(b, b_app, "www.d-corp.test")
    assert r.status_code == 201 and r.json()["verified"] is False, r.text
    assert server.api(b.api_key).get(f"/api/apps/{b_app}").json()["domains"] == []
    r = b.api.post(f"/api/apps/{b_app}/domains/www.d-corp.test/verify")
    assert r.status_code == 400, r.text
    assert "_shipway-challenge.www.d-corp.test" in r.json()["error"]
    assert "no such name" in r.json()["error"]

    r = add(a, a_app, "www.d-corp.test")
    assert r.status_code == 201, r.text
    challenge = r.json()["challenge"]
    assert challenge["type"] == "TXT"
    assert challenge["name"] == "_shipway-challenge.www.d-corp.test"
    # The token is per app: B's record would prove nothing for A.
    assert challenge["value"] not in str(b.api.get(f"/api/apps/{b_app}/domains").json())

    zone.records[challenge["name"]] = "some other value"
    r = a.api.post(f"/api/apps/{a_app}/domains/www.d-corp.test/verify")
    assert r.status_code == 400 and "another value" in r.json()["error"], r.text
    assert a.api.get(f"/api/apps/{a_app}").json()["domains"] == []

    zone.records[challenge["name"]] = challenge["value"]
    r = a.api.post(f"/api/apps/{a_app}/domains/www.d-corp.test/verify")
    assert r.status_code == 200 and r.json()["verified"] is True, r.text
    assert "challenge" not in r.json()
    assert a.api.get(f"/api/apps/{a_app}").json()["domains"] == ["www.d-corp.test"]
    assert "_shipway-challenge.www.d-corp.test" in zone.queries

    # Once proven, the registrable domain is A's.
    r = add(b, b_app, "new.d-corp.test")
    assert r.status_code == 409 and r.json()["error"] == "d-corp.test belongs to another account"
