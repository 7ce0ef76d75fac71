"""What follows a hot upgrade (issue 17 item 2): `releases` marks the
release that went live hot; replicas started later (a scale, the
replacement of a killed one) start from the new release; a rollback
restarts onto the release chosen, in new containers. And a change that
cannot be hot-loaded (another ERTS) is a restart deploy that says why."""
from __future__ import annotations

import re

import docker
import pytest

from tests.e2e.helpers import fetch, new_app, wait_for
from tests.e2e.test_hot_upgrade_otp import ANSWER, HOT, counter_v2

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def running(user, app: str) -> list[dict]:
    return [r for r in user.shipway_json("-a", app, "ps")["replicas"] if r["state"] == "running"]


def versions_by_node(server, app: str, n: int = 30) -> dict[str, str]:
    """node -> the counter's code version ("v1", "v2"), over n requests."""
    seen: dict[str, str] = {}
    for _ in range(n):
        match = ANSWER.search(fetch(server, app).text)
        assert match, "unexpected answer"
        seen[match.group(2)] = match.group(1)
    return seen


def node_of(container_id: str) -> str:
    """The replica's node name (APP@<its address>), from its environment."""
    result = docker.from_env().containers.get(container_id).exec_run(
        ["bash", "-c", ". /shipway/env; echo $RELEASE_NODE"])
    assert result.exit_code == 0
    return result.output.decode().strip()


def test_replicas_after_a_hot_upgrade_start_from_it_and_a_rollback_restarts(make_server,
                                                                            tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "home", "elixir-counter", "hotnext")
    user.push()
    counter_v2(user.src)
    user.commit("0.2.0: the counter's state becomes a map")
    push = user.git(*HOT)
    assert "hot-upgraded to v2 (1 replica(s), none restarted)" in push.stderr, push.stderr
    [upgraded] = running(user, app)

    # `releases` marks v2 as hot (API and CLI), v1 as a restart deploy.
    listed = {r["version"]: r["hot"] for r in user.shipway_json("-a", app, "releases")}
    assert listed == {2: True, 1: False}, listed
    table = user.shipway("-a", app, "releases").stdout.splitlines()
    assert re.match(r"^v2\s+succeeded\s+hot\s", table[1]), table
    assert re.match(r"^v1\s+succeeded\s+[0-9a-f]", table[2]), table
    assert "deploy:      hot (upgraded in place)" in user.shipway("-a", app, "releases:info",
                                                                  "v2").stdout

    # A replica added by a scale starts from v2's release (its own boot).
    user.shipway("-a", app, "ps:scale", "web=2")
    replicas = running(user, app)
    assert len(replicas) == 2 and {r["version"] for r in replicas} == {2}
    [added] = [r for r in replicas if r["container_id"] != upgraded["container_id"]]
    added_node = node_of(added["container_id"])
    seen = wait_for(lambda: (lambda s: s if added_node in s else None)(
        versions_by_node(server, app)), timeout=30)
    assert seen[added_node] == "v2", seen

    # The replacement of a killed replica starts from v2's release too.
    docker.from_env().containers.get(upgraded["container_id"]).kill()

    def replaced() -> list[dict] | None:
        now = running(user, app)
        ids = {r["container_id"] for r in now}
        return now if len(now) == 2 and upgraded["container_id"] not in ids else None
    replicas = wait_for(replaced, timeout=90)
    [replacement] = [r for r in replicas if r["container_id"] != added["container_id"]]
    assert replacement["version"] == 2
    replacement_node = node_of(replacement["container_id"])
    seen = wait_for(lambda: (lambda s: s if replacement_node in s else None)(
        versions_by_node(server, app)), timeout=60)
    assert set(seen.values()) == {"v2"}, seen

    # A rollback to v1 restarts onto v1: new containers answering v1.
    before = {r["container_id"] for r in replicas}
    out = user.shipway("-a", app, "releases:rollback", "v1").stdout
    assert "release v3 (Rollback to v1) is succeeded" in out, out
    after = running(user, app)
    assert len(after) == 2 and {r["version"] for r in after} == {3}
    assert not before & {r["container_id"] for r in after}, (before, after)
    seen = wait_for(lambda: (lambda s: s if len(s) == 2 else None)(versions_by_node(server, app)),
                    timeout=30)
    assert set(seen.values()) == {"v1"}, seen
    listed = {r["version"]: r["hot"] for r in user.shipway_json("-a", app, "releases")}
    assert listed == {3: False, 2: True, 1: False}, listed


# A release step in mix.exs that names another ERTS in the release's .rel,
# as a build on another Erlang would: the file the buildpack's relup step
# (buildpacks/elixir/lib/release_upgrade.escript) compares. The node itself
# boots from start.boot, so the restart deploy runs the release as built.
OTHER_ERTS = '''
  def other_erts(release) do
    rel = Path.join([release.path, "releases", release.version, "counter.rel"])
    File.write!(rel, Regex.replace(~r/\\{erts,\\s*"[^"]+"\\}/, File.read!(rel), ~s({erts,"99.0"})))
    release
  end
end
'''


def test_another_erts_is_a_restart_deploy_saying_why(make_server, tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "home", "elixir-counter", "erts")
    user.push()
    [before] = running(user, app)
    counter_v2(user.src)
    mix = user.src / "mix.exs"
    text = mix.read_text().replace(
        "releases: [counter: [include_executables_for: [:unix]]]",
        "releases: [counter: [include_executables_for: [:unix], "
        "steps: [:assemble, &__MODULE__.other_erts/1]]]")
    mix.write_text(text[:text.rstrip().rindex("end")] + OTHER_ERTS.lstrip("\n"))
    user.commit("0.2.0 built for another ERTS")
    push = user.git(*HOT)
    out = push.stderr
    assert "not hot-upgradable: ERTS changed (" in out and " to 99.0)" in out, out
    assert re.search(r"Hot upgrade not possible \(not hot-upgradable: ERTS changed "
                     r"\([0-9.]+ to 99\.0\)", out), out
    assert "OTP release upgrade" not in out and "hot-upgraded" not in out, out
    [after] = running(user, app)
    assert after["container_id"] != before["container_id"] and after["version"] == 2
    assert "counter v2" in fetch(server, app).text
    assert [r["hot"] for r in user.shipway_json("-a", app, "releases")] == [False, False]
