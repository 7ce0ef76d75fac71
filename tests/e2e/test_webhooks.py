"""Deploy webhooks end to end (issue 18 item 7): a real `shipway server`
(Docker runner and builder) with SHIPWAY_FETCH_ALLOW=localhost and the test
CA trusted, a real HTTPS receiver on 127.0.0.1, real `git push`es: a signed
POST for the release that succeeded (after the receiver answered 500 twice)
and for the one that failed; a webhook at 127.0.0.1 is refused at add time."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.controller.test_webhooks import Receiver, _ca_for_localhost, check_signature
from tests.e2e.helpers import new_app

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_signed_posts_for_succeeded_and_failed_releases(make_server, stack_image,
                                                        tmp_path: Path) -> None:
    cert, key = _ca_for_localhost(tmp_path)
    receiver = Receiver(fail_first=2, tls=(cert, key))
    try:
        server = make_server(env={"SHIPWAY_FETCH_ALLOW": "localhost",
                                  "SSL_CERT_FILE": str(cert)})
        user, app = new_app(server, tmp_path / "home", "procfile", "hook")
        # The allowed name is `localhost`: the loopback address by itself is not.
        refused = user.shipway("-a", app, "webhooks:add", f"https://127.0.0.1:{receiver.port}/",
                               check=False)
        assert refused.returncode == 1 and "loopback" in refused.stderr, refused.stderr
        added = user.shipway_json("-a", app, "webhooks:add",
                                  f"https://localhost:{receiver.port}/deploys")
        secret = added["secret"]
        assert "secret" not in str(user.shipway_json("-a", app, "webhooks"))

        pushed = user.push()
        assert "is live" in pushed.stderr, pushed.stderr
        (user.src / "Procfile").write_text("web: exit 3\n")
        commit = user.commit("a web process that dies")
        assert user.push(check=False).returncode != 0

        # v1's delivery waits out its backoff, so v2's may arrive first
        first, second = sorted(receiver.wait_for(2, timeout=60),
                               key=lambda r: check_signature(r, secret)["release"])
        assert receiver.answers.count(500) == 2 and receiver.answers.count(204) == 2, \
            receiver.answers
        ok, failed = check_signature(first, secret), check_signature(second, secret)
        assert (ok["app"], ok["release"], ok["status"]) == (app, 1, "succeeded")
        assert (failed["release"], failed["status"], failed["commit"]) == (2, "failed", commit)
        assert ok["user"] == failed["user"] == f"{(tmp_path / 'home').name}-hook@example.com"
        assert first["path"] == "/deploys"
        entries = user.shipway_json("-a", app, "apps:activity")
        assert [(e["action"], e["detail"].get("status")) for e in entries] == [
            ("push", "failed"), ("deploy", "failed"), ("push", None),
            ("deploy", "succeeded"), ("push", None), ("webhooks:add", None)], entries
    finally:
        receiver.close()
