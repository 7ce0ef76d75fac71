"""Hot upgrade: the running replicas of an Elixir release upgraded in
place (runner/files/hot-upgrade.sh), none restarted: an OTP release
upgrade (release_handler) when the build made a relup, conducted by the
oldest replica's node, which Shipway calls over its distribution port
(runner/erl_dist.py; through one `docker exec` and erl_call where it
cannot), else the changed modules reloaded (a `docker exec` per replica);
a restart deploy wherever that is not possible. A mixin of DockerRunner: it works on
the runner's desired and live state under the app's lock, as `deploy` does.
"""
from __future__ import annotations

import io
import os
import re
import reprlib
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from twisted.logger import Logger

from core.output import Output
from core.specs import ReleaseSpec
from runner.container_spec import runner_file
from runner.containers import MAX_LINE, Replica
from runner.erl_dist import Atom, ErlDistError, NodeConnection

if TYPE_CHECKING:
    from runner.docker_runner import DockerRunner

log = Logger()

# The slug's first member when the Elixir buildpack made one (see
# buildpacks/elixir/bin/compile): what a replica needs of the new release
# for a hot upgrade, a few hundred KB.
UPGRADE_ARTEFACT = ".shipway-upgrade.tar"
# Past this the artefact is not read into memory (its size is the push's
# to claim): the replicas then fetch the slug as before.
MAX_ARTEFACT_BYTES = 64 << 20
# Set to 1 (in the server's environment), the replicas stage an OTP
# upgrade one after the other instead of all at once; the switch stays
# simultaneous. For bench/hot_upgrade's comparison of the two.
STAGGER_ENV = "SHIPWAY_HOT_UPGRADE_STAGGER"
# Set to "exec", the OTP upgrade always goes through `docker exec` and
# erl_call, the way taken when the node's distribution port cannot be
# reached from here (tests and bench/hot_upgrade compare the two).
VIA_ENV = "SHIPWAY_HOT_UPGRADE_VIA"
_PLAIN = re.compile(r"[A-Za-z0-9_.+-]+")
_RELEASE_DIR = re.compile(r"(?:\./)?(_build/[A-Za-z0-9_.-]+/rel/[A-Za-z0-9_.-]+)/releases/start_erl\.data")
# NAME|CODE|TEXT: a replica's outcome in the OTP path's output.
_OUTCOME = re.compile(r"^([A-Za-z0-9_.-]{1,200})\|(\d{1,4})\|(.*)$")
# The OTP upgrade's time, all included (the conductor's node derives its
# own steps' timeouts from it: hot-upgrade.exprs' Deadline), and what the
# caller waits past it for the answer: Shipway never gives up (and
# restart-deploys) while the conductor may still be switching.
UPGRADE_SECONDS = 300
ANSWER_MARGIN = 30
# The node is the app's: its answer is read up to this many characters.
MAX_ANSWER = 256 << 10
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 200
_short.maxlevel, _short.maxlist, _short.maxtuple, _short.maxdict = 4, 8, 8, 8


@attrs.frozen
class UpgradePlan:
    """What the artefact says the hot push is: an OTP release upgrade of
    `rel` (_build/<env>/rel/<name>) to `vsn` (it has a relup), a refusal
    (the build said why there is no relup), or neither (`rel` None: no
    version bump, or no artefact: the module-reload path, which fetches
    the slug)."""
    rel: str | None = None
    vsn: str | None = None
    refusal: str | None = None


def upgrade_plan(artefact: bytes | None) -> UpgradePlan:
    """Read on the host from the artefact's listing, so that the replicas
    get the artefact only when they install a relup, and a refusal costs
    no `docker exec` at all."""
    if artefact is None:
        return UpgradePlan()
    try:
        with tarfile.open(fileobj=io.BytesIO(artefact), mode="r:") as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            found = [m.group(1) for name in members if (m := _RELEASE_DIR.fullmatch(name))]
            if len(found) != 1:
                return UpgradePlan()
            rel = found[0]

            def text(name: str) -> str:
                data = tar.extractfile(members[name]) if name in members else None
                return data.read(4096).decode("utf-8", "replace") if data is not None else ""

            fields = text(f"{rel}/releases/start_erl.data").split()
            vsn = fields[1] if len(fields) == 2 else ""
            if not _PLAIN.fullmatch(vsn) or ".." in vsn or ".." in rel:
                return UpgradePlan(refusal="not hot-upgradable: the release's name or version is not plain")
            said = text(f"{rel}/releases/shipway-no-hot-upgrade").strip().splitlines()
            if said:
                return UpgradePlan(refusal=f"{said[0]} (to {vsn})")
            if f"{rel}/releases/{vsn}/relup" in members:
                return UpgradePlan(rel=rel, vsn=vsn)
            return UpgradePlan()
    except (tarfile.TarError, OSError):
        return UpgradePlan()


def upgrade_artefact(slug: Path) -> bytes | None:
    """The slug's upgrade artefact, read from its head (only that much of
    the slug is inflated), or None when the slug does not start with one.
    Read once on the host and handed to every replica on its script's
    stdin: no replica fetches or inflates the slug for an OTP upgrade."""
    try:
        with tarfile.open(slug, "r|gz") as tar:
            first = tar.next()
            if (first is None or first.name != UPGRADE_ARTEFACT or not first.isfile()
                    or first.size > MAX_ARTEFACT_BYTES):
                return None
            data = tar.extractfile(first)
            return data.read() if data is not None else None
    except (OSError, tarfile.TarError):
        return None


class HotUpgradeMixin:
    """`hot_upgrade` of IRunner, for DockerRunner (its state, its lock)."""

    def hot_upgrade(self: "DockerRunner", spec: ReleaseSpec, output: Output) -> bool:
        """Upgrade the running replicas to `spec` in place (runner/files/
        hot-upgrade.sh); where that is not possible (nothing runs, the
        process types or config changed, not an Elixir release, more than
        module code changed, a replica failed), deploy `spec` with a restart
        instead, which also brings a half-upgraded app back to one release."""
        with self._lock(spec.app):
            current = self._desired.get(spec.app)
            live = list(self._live.get(spec.app, {}).values())
            reason = None
            if current is None or not live:
                reason = "nothing is running"
            elif current.process_types != spec.process_types:
                reason = "the process types changed"
            elif {k: v for k, v in current.env.items() if k != "APP_VERSION"} != \
                    {k: v for k, v in spec.env.items() if k != "APP_VERSION"}:
                reason = "the config changed"
            elif current.size != spec.size:
                reason = "the replica size changed"
            touched: list[Replica] = []
            if reason is None:
                reason = self._upgrade_in_place(spec, live, output, touched)
            if reason is not None:
                output(f"-----> Hot upgrade not possible ({reason}): restarting instead")
                try:
                    self.deploy(spec, output)
                    return False
                except Exception:
                    if touched and current is not None:
                        # Some replicas run the new code already: replace
                        # them all, so that what runs is one release again.
                        output(f"-----> Replacing the replicas upgraded in place with "
                               f"v{current.version} replicas")
                        try:
                            self.deploy(current, output)
                        except Exception:  # noqa: BLE001 (the first error is the one to see)
                            log.failure("runner: {app} could not go back to v{v}",
                                        app=spec.app, v=current.version)
                    raise
            self._desired[spec.app] = spec
            self._live[spec.app] = {r.id: attrs.evolve(r, version=spec.version) for r in live}
            output(f"-----> {spec.app} hot-upgraded to v{spec.version} "
                   f"({len(live)} replica(s), none restarted)")
            return True

    def _upgrade_in_place(self: "DockerRunner", spec: ReleaseSpec, live: list[Replica], output: Output,
                          touched: list[Replica]) -> str | None:
        """None when every replica was upgraded, else why not; `touched`
        gets each replica whose code may have changed. An OTP release
        upgrade (the artefact has a relup) goes through one replica for
        all (hot-upgrade.sh's otp mode); a push without a version bump
        reloads the changed modules, each replica fetching the slug."""
        output(f"-----> Hot upgrading {len(live)} replica(s) to v{spec.version}")
        started = time.monotonic()
        replicas = sorted(live, key=lambda r: r.created)
        artefact = upgrade_artefact(self.local_slugs.path(spec.slug_key))
        plan = upgrade_plan(artefact)
        if plan.refusal is not None:
            return plan.refusal
        if plan.rel is not None and artefact is not None:
            results = self._otp_upgrade(replicas, spec, plan, artefact)
        else:
            slug_url, _keys = self._urls(spec)
            with ThreadPoolExecutor(max_workers=min(16, len(replicas))) as pool:
                results = list(pool.map(
                    lambda r: self._run_upgrade(r, [str(spec.version), "reload", slug_url]), replicas))
        output(f"       hot deploy step: {time.monotonic() - started:.2f} s for {len(replicas)} replica(s)"
               + (f" (upgrade artefact {len(artefact) / 1024:.0f} KB)"
                  if plan.rel is not None and artefact else ""))
        reasons = []
        for r, (code, said) in zip(replicas, results):
            for line in said[-20:]:
                output(f"       {r.id[:12]}: {line[:MAX_LINE]}")
            if code != 3:  # 3: refused before anything was changed
                touched.append(r)
            if code == 3:
                reasons.append(said[-1] if said else "not an upgradable release")
            elif code == 4:
                reasons.append(f"install_release failed on replica {r.id[:12]}; "
                               "release_handler kept it on the old release")
            elif code != 0:
                reasons.append(f"replica {r.id[:12]} failed (exit {code})")
        # A replica's own reason before "another replica could not...".
        reasons.sort(key=lambda why: why.startswith("another replica"))
        return reasons[0] if reasons else None

    def _otp_upgrade(self: "DockerRunner", replicas: list[Replica], spec: ReleaseSpec,
                     plan: UpgradePlan, artefact: bytes) -> list[tuple[int, list[str]]]:
        """(exit status, lines) per replica of the OTP release upgrade,
        conducted by the oldest replica's node (runner/files/
        hot-upgrade.exprs: it stages the release on every node over the
        distribution, then switches them all). Shipway calls that node
        over its distribution port (published on 127.0.0.1) itself; where it cannot (no port,
        refused), through one `docker exec` with erl_call (hot-upgrade.sh)."""
        stagger = "true" if os.environ.get(STAGGER_ENV) == "1" else "false"
        conductor = replicas[0]
        exprs = runner_file("hot-upgrade.exprs")
        before = time.time()
        deadline_ms = int((before + UPGRADE_SECONDS) * 1000)  # epoch: the replicas share our clock
        direct = (None if os.environ.get(VIA_ENV) == "exec" else
                  self._over_distribution(conductor, replicas, spec, plan, artefact, exprs, stagger,
                                          deadline_ms))
        if direct is not None:
            code, said = direct
        else:
            code, said = self._run_upgrade(conductor, [str(spec.version), "otp", str(plan.rel), str(plan.vsn),
                                                       stagger, str(deadline_ms), exprs.decode(),
                                                       *(r.name for r in replicas)], artefact)
        return replica_results(code, said, replicas, before, time.time())

    def _over_distribution(self: "DockerRunner", conductor: Replica, replicas: list[Replica],
                           spec: ReleaseSpec, plan: UpgradePlan, artefact: bytes, exprs: bytes,
                           stagger: str, deadline_ms: int) -> tuple[int, list[str]] | None:
        """The upgrade run by file:script in the conductor's node, called
        as a hidden node with the app's cookie (runner/erl_dist.py): no
        process started in any replica. None when the node cannot be
        reached so (nothing was done); else (status, lines) as
        hot-upgrade.sh's. Whatever the node answers (it is the app's), an
        answer not understood is the upgrade not completing, never an
        exception; its files are removed whatever happens."""
        cookie = spec.env.get("RELEASE_COOKIE")
        if not cookie or conductor.dist_port is None:
            return None  # a replica made before the port was published
        try:
            conn = NodeConnection("127.0.0.1", conductor.dist_port, cookie)
            connected = time.time()
        except Exception:  # noqa: BLE001 (any reason: the docker exec way)
            log.info("runner: {app}'s node not reached over its distribution: docker exec",
                     app=spec.app)
            return None
        lines = [f"conductor|{int(connected * 1e6)}"]
        base = f"/app/.shipway-upgrade.{os.getpid()}.{int(connected * 1e6)}"
        answer: Any = None
        with conn:
            try:
                wrote = [conn.call("file", "write_file", [base + ".tar", artefact], timeout=60),
                         conn.call("file", "write_file", [base + ".exprs", exprs], timeout=10)]
                if wrote != [Atom("ok"), Atom("ok")]:
                    return 1, [f"the upgrade's files could not be written: {_short.repr(wrote)}"[:MAX_LINE]]
                lines.append(f"sent|{int(time.time() * 1e6)}")
                bindings = {"Vsn": plan.vsn, "Rel": plan.rel, "Version": str(spec.version),
                            "Targets": [r.name for r in replicas], "Stagger": Atom(stagger),
                            "TarFile": base + ".tar", "Deadline": deadline_ms}
                # An orddict: sorted by name.
                answer = conn.call("file", "script", [base + ".exprs", [
                    (Atom(name), value) for name, value in sorted(bindings.items())]],
                    timeout=deadline_ms / 1000 - time.time() + ANSWER_MARGIN)
            except Exception as exc:  # noqa: BLE001 (lost, timed out, or an answer not understood)
                return 1, [f"the upgrade did not complete (the node's connection: {exc})"[:MAX_LINE]]
            finally:
                _remove_files(conn, conductor.dist_port, cookie, base)
        code, said = otp_answer(answer)
        lines.extend(said)
        lines.append(f"answered|{int(time.time() * 1e6)}")
        return code, lines

    def _run_upgrade(self: "DockerRunner", r: Replica, args: list[str],
                     artefact: bytes | None = None) -> tuple[int, list[str]]:
        try:
            return self.docker.run_script(r.id, "hot-upgrade.sh", args, stdin=artefact)
        except Exception as exc:  # noqa: BLE001 (gone, or the engine refused)
            return -1, [f"could not be reached: {exc}"]


def replica_results(code: int, said: list[str], replicas: list[Replica], before: float,
                    after: float) -> list[tuple[int, list[str]]]:
    """(status, lines) per replica (the conductor first) of the OTP path's
    (status, lines): each replica's own NAME|CODE|TEXT line, or, with no
    line of its own (the call failed, refused, or answered nonsense), the
    call's status (1 if that says 0) and its other lines."""
    names = {r.name for r in replicas}
    outcomes: dict[str, tuple[int, str]] = {}
    common: list[str] = []
    for line in said:
        match = _OUTCOME.match(line)
        if match and match.group(1) in names:
            outcomes[match.group(1)] = (int(match.group(2)), match.group(3))
        elif not line.startswith(("timing|", "conductor|")):
            common.append(line)
    breakdown = _breakdown(said, before, after)
    results = []
    for r in replicas:
        if r.name in outcomes:
            own_code, text = outcomes[r.name]
            results.append((own_code, [*([breakdown] if r is replicas[0] else []), *common, text]))
        else:
            results.append((code if code != 0 else 1, common or ["no answer from the upgrade"]))
    return results


def otp_answer(answer: Any) -> tuple[int, list[str]]:
    """(status, lines) of file:script's answer to hot-upgrade.exprs: {ok,
    "NAME|CODE|TEXT;...;timing|..."} gives (0, its lines: each replica's
    own outcome is on its line); anything else (the node is the app's, its
    answer anything) (1, why), never an exception."""
    try:
        text = answer[1] if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == "ok" else None
        if isinstance(text, list) and len(text) <= MAX_ANSWER \
                and all(type(c) is int and 0 <= c < 0x110000 for c in text):
            text = "".join(map(chr, text))  # a string past the short form
        if not isinstance(text, str):
            return 1, [f"the upgrade did not complete: {_short.repr(answer)}"[:MAX_LINE]]
        return 0, [line[:MAX_LINE] for line in text[:MAX_ANSWER].split(";")]
    except Exception:  # noqa: BLE001 (whatever it was: not understood)
        return 1, ["the upgrade did not complete: its answer was not understood"]


def _remove_files(conn: NodeConnection, port: int, cookie: str, base: str) -> None:
    """The upgrade's files off the replica's bounded disk (the artefact is
    up to 64 MiB; the script removes it once read), best effort and
    briefly, over a new connection when the call's was lost (a failed
    call closes it)."""
    for attempt in range(2):
        try:
            if attempt:
                conn = NodeConnection("127.0.0.1", port, cookie, timeout=3)
            with conn:
                for leftover in (".tar", ".exprs"):
                    conn.call("file", "delete", [base + leftover], timeout=3)
            return
        except ErlDistError:
            continue


def _breakdown(said: list[str], before: float, after: float) -> str:
    """Where the OTP path's time went, from its timing lines (epoch µs of
    this host and the replica share a clock): reaching the conductor's
    node (docker exec and erl_call, or a connection of Shipway's own),
    the artefact's transfer, reaching the other nodes, the stage, the
    switch, the answer."""
    times: dict[str, list[int]] = {}
    for line in said:
        head, _, rest = line.partition("|")
        if re.fullmatch(r"\d{1,20}(?:\|\d{1,20}){0,5}", rest):
            times[head] = [int(x) for x in rest.split("|")]
    ms = lambda t: (t - before * 1e6) / 1000  # noqa: E731 (since the upgrade began)
    if len(times.get("timing", [])) != 4:
        return "timing: not reported"
    w0, reached, staged, switched = times["timing"]
    steps = times.get("conductor", [])
    if len(steps) == 3:  # docker exec, bash, erl_call
        script, received, done = steps
        head = (f"docker exec started {ms(script):.0f} ms, artefact received +{(received - script) / 1000:.0f} ms, "
                f"erl_call connected +{(w0 - received) / 1000:.0f} ms")
        end = done
    elif len(steps) == 1 and times.get("sent") and times.get("answered"):
        (sent,), (end,) = times["sent"], times["answered"]
        head = (f"node's distribution connected {ms(steps[0]):.0f} ms (no docker exec), "
                f"artefact sent +{(sent - steps[0]) / 1000:.0f} ms, script began +{(w0 - sent) / 1000:.0f} ms")
    else:
        return "timing: not reported"
    return (f"timing: {head}, nodes reached +{reached} ms, staged +{staged - reached} ms, "
            f"switched +{switched - staged} ms, answered +{(end - w0) / 1000 - switched:.0f} ms "
            f"(total {(after - before) * 1000:.0f} ms)")
