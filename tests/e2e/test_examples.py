"""Example apps other than the Procfile one, pushed for real and served by
locked-down run containers through nginx."""
from __future__ import annotations

import pytest

from tests.e2e.helpers import fetch, new_app

pytestmark = [pytest.mark.slow, pytest.mark.docker]


@pytest.mark.parametrize("example, greeting", [("elixir", "Hello from Elixir"),
                                               ("nodejs", "Hello from Node.js")])
def test_example_is_served(make_server, tmp_path, example: str, greeting: str) -> None:
    server = make_server(env={"SHIPWAY_STOP_GRACE": "2"})
    user, app = new_app(server, tmp_path / "home", example, example[:4], env={"GREETING": "salut"})
    push = user.push()
    assert "is live at" in push.stderr
    r = fetch(server, app)
    assert r.status_code == 200
    assert r.text.startswith(greeting) and "(release v1) salut" in r.text
