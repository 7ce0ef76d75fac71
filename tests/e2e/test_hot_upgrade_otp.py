"""OTP release upgrades (issue 17): a hot push whose mix.exs version went up
is installed by release_handler in every running replica at once; the
GenServer keeps its process and code_change/3 migrates its state, the three
replicas stay one cluster. An appup that fails leaves the node on the old
release and the restart path runs, saying so."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.hot_upgrade import VIA_ENV
from tests.e2e.helpers import Prober, fetch, new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]

HOT = ("-c", "http.extraheader=Shipway-Hot: true", "push", "shipway", "main")
ANSWER = re.compile(r"counter (v\d) node=(\S+) pid=(\S+) count=(\d+) nodes=(\d+)")


def counter_v2(src: Path, extra: str = "") -> None:
    """Version 0.2.0 of examples/elixir-counter: the state becomes a map,
    which code_change/3 makes from v1's integer."""
    mix = src / "mix.exs"
    mix.write_text(mix.read_text().replace('version: "0.1.0"', 'version: "0.2.0"'))
    source = src / "lib" / "counter.ex"
    text = source.read_text()
    text = text.replace("  @impl true\n  def init(count), do: {:ok, count}\n\n", "")
    start = text.index("  @impl true\n  def handle_call")
    end = text.index("end\n\ndefmodule Counter.Handler")
    text = text[:start] + '''  @impl true
  def init(_), do: {:ok, %{count: 0}}

  @impl true
  def handle_call(:hit, _from, %{count: count} = state) do
    {:reply, "counter v2 node=#{node()} pid=#{inspect(self())} count=#{count + 1} nodes=#{length(Node.list())}\\n",
     %{state | count: count + 1}}
  end

  @impl true
''' + extra + '''  def code_change(_old, count, _extra) when is_integer(count), do: {:ok, %{count: count}}
''' + text[end:]
    source.write_text(text)


def answers(server, app: str, n: int) -> dict[str, tuple[str, str, int, int]]:
    """node -> (code version, pid, highest count, cluster size) over n requests."""
    seen: dict[str, tuple[str, str, int, int]] = {}
    for _ in range(n):
        match = ANSWER.search(fetch(server, app).text)
        assert match, "unexpected answer"
        vsn, node, pid, count, nodes = match.groups()
        old = seen.get(node)
        seen[node] = (vsn, pid, max(int(count), old[2] if old else 0), int(nodes))
    return seen


@pytest.mark.parametrize("via", ["distribution", "exec"])
def test_otp_upgrade_of_three_clustered_replicas_keeps_processes_and_state(make_server, tmp_path,
                                                                          via: str) -> None:
    """Shipway calls the oldest replica's node over its distribution port
    (no process started in any replica), or, where that port cannot be
    reached, through one docker exec and erl_call: both are tested."""
    server = make_server(env={VIA_ENV: via})
    user, app = new_app(server, tmp_path / "home", "elixir-counter", "otp")
    user.push()
    user.shipway("-a", app, "ps:scale", "--replicas", "3")
    # Three distinct nodes, each connected to the two others through the
    # app's discovery name.
    before = wait_for(lambda: (lambda s: s if len(s) == 3 and all(v[3] == 2 for v in s.values())
                               else None)(answers(server, app, 30)), timeout=180)
    assert all(node.startswith(f"{app}@") for node in before), before
    assert {v[0] for v in before.values()} == {"v1"}

    counter_v2(user.src)
    user.commit("0.2.0: the counter's state becomes a map")
    with Prober(server, app) as probe:
        push = user.git(*HOT)
    out = push.stderr
    assert "making the OTP hot upgrade" in out, out
    assert "{update,'Elixir.Counter',{advanced,[]}" in out, out
    assert "Hot upgrading 3 replica(s)" in out, out
    assert out.count("OTP release upgrade 0.1.0 -> 0.2.0") == 3, out
    # Only the upgrade artefact at the slug's head went to the replicas,
    # to one replica's node (which staged it on the three nodes, then all
    # switched), and the step's timing was reported.
    assert "(upgrade artefact " in out and out.count("ran): staged ") == 3, out
    if via == "exec":
        assert out.count("timing: docker exec started") == 1, out
    else:
        assert out.count("timing: node's distribution connected") == 1, out
        assert "docker exec" not in out.replace("(no docker exec)", ""), out
    assert "hot-upgraded to v2 (3 replica(s), none restarted)" in out, out
    assert probe.sent > 0 and probe.failures == [], probe.failures

    after = answers(server, app, 30)
    assert set(after) == set(before), (before, after)
    for node, (vsn, pid, count, nodes) in after.items():
        assert vsn == "v2" and pid == before[node][1], (node, before[node], after[node])
        assert count > before[node][2]  # the count went on: the state was migrated
        assert nodes == 2  # still one cluster
    replicas = user.shipway_json("-a", app, "ps")["replicas"]
    assert len(replicas) == 3 and {r["version"] for r in replicas} == {2}


def test_failing_appup_goes_back_and_restarts(make_server, tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "home", "elixir-counter", "otpfail")
    user.push()
    [before] = user.shipway_json("-a", app, "ps")["replicas"]
    # An appup shipped by the app (used as it is) whose code_change refuses.
    counter_v2(user.src, extra="  def code_change(_old, _state, :refuse), do: {:error, :refused}\n")
    priv = user.src / "priv"
    priv.mkdir()
    (priv / "counter.appup").write_text(
        '{"0.2.0", [{"0.1.0", [{update, \'Elixir.Counter\', {advanced, refuse}}]}], '
        '[{"0.1.0", []}]}.\n')
    user.commit("0.2.0 with an appup that fails")
    push = user.git(*HOT)
    out = push.stderr
    assert "the application's own appup (priv)" in out, out
    assert "install_release failed" in out, out
    assert "Hot upgrade not possible (install_release failed on replica" in out, out
    # The restart path deployed v2 in new replicas.
    assert wait_for(lambda: "counter v2" in fetch(server, app).text, timeout=30)
    [after] = [r for r in user.shipway_json("-a", app, "ps")["replicas"] if r["state"] == "running"]
    assert after["container_id"] != before["container_id"] and after["version"] == 2
