"""DesiredState: the controller's answer to the runner's supervision
(runner.interface.IDesiredState), as names and plain release specs."""
from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from controller.deploys import DesiredState
from controller.errors import NotFound
from core.specs import ReleaseSpec
from runner.interface import IDesiredState
from tests.controller.test_releases import deploy


def test_it_answers_with_names_and_plain_specs(store, owner, app, deployer):
    state = DesiredState(store.settings, store)
    assert verifyObject(IDesiredState, state)
    assert state.app_names() == {app.name} and state.exists(app.name)
    assert state.current_spec(app.name) is None  # nothing deployed yet
    deploy(store, app, owner, "aaa")
    store.add_domain(owner, app.name, "www.example.org")
    spec = state.current_spec(app.name)
    assert isinstance(spec, ReleaseSpec)
    assert (spec.app, spec.version, spec.formation) == (app.name, 1, {"web": 1})
    assert spec.env["APP_VERSION"] == "v1"
    # The spec carries the names it is served at, the app's own first.
    own = store.settings.app_hostname(app.name)
    assert spec.hostnames == (own, "www.example.org")
    assert state.hostnames(app.name) == [own, "www.example.org"]


def test_a_gone_app_is_gone_everywhere(store, owner, app, deployer):
    state = DesiredState(store.settings, store)
    store.destroy_app(owner, app.name)
    assert state.app_names() == set() and not state.exists(app.name)
    assert state.hostnames(app.name) is None
    with pytest.raises(NotFound):
        state.current_spec(app.name)
