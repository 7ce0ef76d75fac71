"""Hot upgrade: new module code loaded into the running replicas of an
Elixir release (runner/files/hot-upgrade.sh), none restarted; a restart
deploy wherever that is not possible. A mixin of DockerRunner: it works on
the runner's desired and live state under the app's lock, as `deploy` does.
"""
from __future__ import annotations

import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from twisted.logger import Logger

from core.output import Output
from core.specs import ReleaseSpec
from runner.containers import Replica

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
        gets each replica whose code may have changed. All replicas at
        once: each runs hot-upgrade.sh, which installs an OTP release
        upgrade (a higher release version) or reloads changed modules."""
        output(f"-----> Hot upgrading {len(live)} replica(s) to v{spec.version}")
        started = time.monotonic()
        slug_url, _keys = self._urls(spec)
        artefact = upgrade_artefact(self.local_slugs.path(spec.slug_key))
        replicas = sorted(live, key=lambda r: r.created)
        with ThreadPoolExecutor(max_workers=min(16, len(replicas))) as pool:
            results = list(pool.map(lambda r: self._run_upgrade(r, slug_url, spec, artefact), replicas))
        output(f"       hot deploy step: {time.monotonic() - started:.2f} s for {len(replicas)} replica(s)"
               + (f" (upgrade artefact {len(artefact) / 1024:.0f} KB)" if artefact else ""))
        reasons = []
        for r, (code, said) in zip(replicas, results):
            for line in said[-20:]:
                output(f"       {r.id[:12]}: {line}")
            if code != 3:  # 3: refused before anything was changed
                touched.append(r)
            if code == 3:
                reasons.append(said[-1] if said else "not an upgradable release")
            elif code == 4:
                reasons.append(f"install_release failed on replica {r.id[:12]}; "
                               "release_handler kept it on the old release")
            elif code != 0:
                reasons.append(f"replica {r.id[:12]} failed (exit {code})")
        return reasons[0] if reasons else None

    def _run_upgrade(self: "DockerRunner", r: Replica, slug_url: str, spec: ReleaseSpec,
                     artefact: bytes | None) -> tuple[int, list[str]]:
        try:
            if artefact is None:
                return self.docker.run_script(r.id, "hot-upgrade.sh", [slug_url, str(spec.version)])
            return self.docker.run_script(r.id, "hot-upgrade.sh",
                                          [slug_url, str(spec.version), "artefact-on-stdin"],
                                          stdin=artefact)
        except Exception as exc:  # noqa: BLE001 (gone, or the engine refused)
            return -1, [f"could not be reached: {exc}"]
