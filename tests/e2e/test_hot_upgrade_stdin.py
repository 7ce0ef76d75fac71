"""The hot upgrade's script gets the artefact on `docker exec`'s stdin
(runner/containers.py run_script). A script that ends before reading it
(a refusal, a bad environment) must come back with its own exit status and
words, not with the broken pipe of the write that it never read."""
from __future__ import annotations

import docker
import pytest

from core.settings import load_settings
from runner.containers import MAX_LINE, MAX_OUTPUT, Containers
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
                                           ["2", "otp", "../etc", "0.2.0", "false", "0", "a"],
                                           stdin=b"\0" * (8 << 20))
        assert code == 3, (code, said)
        assert said[-1:] == ["not hot-upgradable: the release's name or version is not plain"], said
    finally:
        container.remove(force=True, v=True)


@pytest.mark.parametrize("stdin", [None, b"\0" * 1000], ids=["no-stdin", "stdin"])
def test_what_a_replica_prints_is_read_bounded(stack_image: str, stdin: bytes | None) -> None:
    """The replica is the app's: here its env file (which the script
    sources) prints a 3 MB line and 3 MB of short ones. Shipway reads at
    most MAX_OUTPUT bytes of it, lines cut at MAX_LINE characters, before
    any of it goes to the pusher."""
    client = docker.from_env()
    label = unique("flood")
    env = ("head -c 3000000 /dev/zero | tr '\\\\0' x; echo; yes line | head -c 3000000; "
           "RELEASE_NODE=x@y")
    container = client.containers.run(
        stack_image, ["bash", "-c", f'mkdir -p /shipway && printf "%s\\n" "{env}" > /shipway/env '
                                    "&& chmod 644 /shipway/env && exec sleep 120"],
        user="0", detach=True, labels={"shipway.test": label})
    try:
        settings, _ = load_settings({}, environ={})
        containers = Containers(settings, client)
        _code, said = containers.run_script(container.id, "hot-upgrade.sh",
                                            ["2", "otp", "../etc", "0.2.0", "false", "0", "a"],
                                            timeout=60, stdin=stdin)
        assert said and said[0] == "x" * MAX_LINE
        assert max(map(len, said)) <= MAX_LINE
        assert sum(len(line) + 1 for line in said) <= MAX_OUTPUT + MAX_LINE
    finally:
        container.remove(force=True, v=True)
