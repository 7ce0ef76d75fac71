"""The hot upgrade's script gets the artefact on `docker exec`'s stdin
(runner/containers.py run_script). A script that ends before reading it
(a refusal, a bad environment) must come back with its own exit status and
words, not with the broken pipe of the write that it never read."""
from __future__ import annotations

import docker
import pytest

from core.settings import load_settings
from runner.containers import Containers
from tests.conftest import unique

pytestmark = [pytest.mark.docker]


def test_a_script_that_ends_before_reading_its_stdin_reports_why(stack_image: str) -> None:
    client = docker.from_env()
    label = unique("stdin")
    # The env file the script sources, as a replica has it; then idle.
    container = client.containers.run(
        stack_image, ["bash", "-c", "mkdir -p /shipway && echo RELEASE_NODE=x@y > /shipway/env "
                                    "&& chmod 644 /shipway/env && exec sleep 120"],
        user="0", detach=True, labels={"shipway.test": label})
    try:
        settings, _ = load_settings({}, environ={})
        containers = Containers(settings, client)
        # Several MB: far more than the pipe and socket buffers hold, so
        # the write is still going when the script has ended.
        code, said = containers.run_script(container.id, "hot-upgrade.sh",
                                           ["2", "otp", "../etc", "0.2.0", "false", "a"],
                                           stdin=b"\0" * (8 << 20))
        assert code == 3, (code, said)
        assert said[-1:] == ["not hot-upgradable: the release's name or version is not plain"], said
    finally:
        container.remove(force=True)
