"""Hostnames users type (issue 16, bad input): uppercase, trailing dot and
IDNA normalized to the form DNS, SNI and the router match; 253 characters
accepted; wildcards and over-long names refused with a clear message."""
from __future__ import annotations

import pytest

from controller.domains import check_hostname
from controller.errors import BadRequest


def _name(length: int) -> str:
    """A valid name of exactly `length` characters (63-character labels)."""
    labels, left = [], length - len(".example")
    while left > 0:
        n = min(63, left)
        labels.append("a" * n)
        left -= n + 1
    name = ".".join(labels) + ".example"
    while len(name) < length:  # a label of 63 left one character short
        name = "b" + name
    assert len(name) == length
    return name


def test_idna_names_become_punycode(store, owner, app, deployer):
    d = store.add_domain(owner, app.name, "Bücher.Example.")
    assert d.hostname == "xn--bcher-kva.example"
    assert [x.hostname for x in store.list_domains(owner, app.name)] == ["xn--bcher-kva.example"]
    # The same name typed either way is one name; removing by the Unicode form works.
    with pytest.raises(Exception, match="already in use"):
        store.add_domain(owner, app.name, "xn--bcher-kva.example")
    store.remove_domain(owner, app.name, "bücher.example")
    assert store.list_domains(owner, app.name) == []


def test_uppercase_and_trailing_dot():
    assert check_hostname("WWW.Example.COM.", "shipway.test") == "www.example.com"


def test_253_characters_accepted_254_refused():
    assert check_hostname(_name(253), "shipway.test") == _name(253)
    with pytest.raises(BadRequest, match="at most 253"):
        check_hostname(_name(254), "shipway.test")


@pytest.mark.parametrize("host", ["*.example.com", "*", "a.*.example.com"])
def test_wildcards_refused_clearly(host):
    with pytest.raises(BadRequest, match="wildcard hostnames are not supported"):
        check_hostname(host, "shipway.test")


@pytest.mark.parametrize("host", ["bü cher.example", "b\u00fc\u0000.example", "xn--zz.example"])
def test_bad_idna_refused(host):
    with pytest.raises(BadRequest, match="invalid"):
        check_hostname(host, "shipway.test")
