"""The pre-receive pipeline: what a push means.

gitd calls `Pipeline.receive` after the pushed objects are in the app's
repository and before any ref moves; the answer decides, per ref, whether the
ref moves. A push to main/master builds, releases and deploys under the app's
push lock; other branches are only stored. Everything the pusher should see
goes through `progress`, one line at a time, as it happens.

Pure orchestration: the builder and slug store make the slug, and one
controller call (`deploy_slug`) makes the release and deploys it; this
module owns no storage and no release lock.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dulwich.repo import Repo
from twisted.logger import Logger

from builder.interface import BuildRequest, BuildResult, IBuilder
from controller.errors import BuildFailed, DeployFailed, ShipwayError
from controller.models import App, Build, Release, Slug
from controller.service import Controller
from core.settings import Settings
from hooks.interface import ZERO_SHA, Progress, Push, PushOutcome, RefUpdate
from core.locks import Busy, Locks, make_locks
from logger.store import LogStore
from storage.interface import ISlugStore, SlugStoreFull

log = Logger()

DEPLOY_BRANCHES = ("main", "master")
HEADS = "refs/heads/"


class _Rejected(Exception):
    """Ends a deploy with a short reason for `! [remote rejected]`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Transcript:
    """Tees every line to the pusher, keeps it for the build record and adds
    it to the app's logs (`record`). The deployer logs its own lines, so
    they go through `unrecorded`."""

    def __init__(self, progress: Progress, record: Progress | None = None) -> None:
        self.progress = progress
        self.record = record
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self._emit(line, self.record)

    def unrecorded(self, line: str) -> None:
        """To the pusher and the build record, not to the app's logs."""
        self._emit(line, None)

    def _emit(self, line: str, record: Progress | None) -> None:
        for part in str(line).rstrip("\n").split("\n"):
            self.lines.append(part)
            self.progress(part)
            if record is not None:
                record(part)

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


def branch_of(ref: str) -> str | None:
    return ref[len(HEADS):] if ref.startswith(HEADS) else None


def ref_value(repo_path: Path, ref: str) -> str:
    """The ref's commit now, ZERO_SHA if it does not exist."""
    repo = Repo(str(repo_path))
    try:
        value = repo.refs[ref.encode()]
    except KeyError:
        value = None
    finally:
        repo.close()
    return value.decode() if value else ZERO_SHA


class Pipeline:
    def __init__(self, settings: Settings, *, controller: Controller, builder: IBuilder,
                 slugs: ISlugStore | None, logs: LogStore | None = None,
                 locks: Locks | None = None) -> None:
        self.settings = settings
        self.controller = controller
        self.builder = builder
        self.slugs = slugs
        self.logs = logs  # logger.store.LogStore: build lines join the app's logs
        # "push:<app>": one deploying push per app, across every server
        # process (core/locks.py); try mode, a pusher hears "busy" at once.
        self.locks = locks if locks is not None else make_locks(settings)

    # --- the entry point -------------------------------------------------
    def receive(self, push: Push, progress: Progress) -> PushOutcome:
        """Decide every ref of one push; deploys run in the order pushed."""
        outcome: PushOutcome = {}
        for update in push.updates:
            try:
                outcome[update.ref] = self._one(push, update, progress)
            except Exception as exc:  # never let one ref crash gitd's handler
                log.failure("pipeline: {app} {ref} crashed", app=push.app.name, ref=update.ref)
                progress(f"-----> Internal error: {exc.__class__.__name__}")
                outcome[update.ref] = "internal error"
        return outcome

    def _one(self, push: Push, update: RefUpdate, progress: Progress) -> str | None:
        branch = branch_of(update.ref)
        if branch is None:
            progress(f"{update.ref}: only branches (refs/heads/...) can be pushed")
            return "only branches can be pushed"
        if update.new == ZERO_SHA:
            return self._delete(push, branch, progress)
        if branch not in DEPLOY_BRANCHES:
            progress(f"branch {branch} stored, not deployed (only main/master deploy)")
            return None
        try:
            with self.locks.hold(f"push:{push.app.name}", reentrant=False,
                                 busy=f"another push to {push.app.name} is in progress"):
                if ref_value(push.repo_path, update.ref) != update.old:
                    # Another deploy moved the branch after this push began.
                    progress(f"{update.ref} changed during the push; fetch first")
                    return "stale info (fetch first)"
                reason = self._deploy(push, update, branch, progress)
                if reason is None and push.move_ref is not None:
                    reason = push.move_ref(update)
                return reason
        except Busy as busy:
            progress(f"-----> {busy}")
            return str(busy)

    # --- branch deletion -------------------------------------------------
    def deployed_branch(self, push: Push) -> str | None:
        """The branch of the newest successful deploy: main or master, or None
        when nothing was deployed from a push yet."""
        for build in sorted(self.controller.list_builds(push.user, push.app.name),
                            key=lambda b: b.id, reverse=True):
            if build.status == "succeeded" and build.release_version is not None:
                return branch_of(build.ref)
        return None

    def _delete(self, push: Push, branch: str, progress: Progress) -> str | None:
        if branch in DEPLOY_BRANCHES:
            try:
                deployed = self.deployed_branch(push)
            except NotImplementedError:
                deployed = branch  # cannot tell: keep main/master safe
            if deployed == branch:
                progress(f"branch {branch} is deployed and cannot be deleted")
                return "cannot delete the deployed branch"
        progress(f"branch {branch} deleted")
        return None

    # --- build → slug → release → deploy ---------------------------------
    def _deploy(self, push: Push, update: RefUpdate, branch: str,
                progress: Progress) -> str | None:
        app, commit = push.app, update.new
        out = _Transcript(progress, self.logs.writer(app.name, "shipway", "build")
                          if self.logs is not None else None)
        started = time.monotonic()
        build = self._start_build(push, update, out)
        status, reason, version = "failed", "internal error", None
        try:
            out(f"-----> Building {app.name} ({branch} {commit[:7]})")
            if push.options.hot:
                out("-----> Hot upgrade requested: the running replicas are upgraded "
                    "in place if only module code changed")
            result = self._build(app, push.repo_path, commit, push.options.clean, out)
            slug = self._store_slug(app, commit, result, out)
            release = self._release(app, slug, commit, push, out)
            version = release.version
            out(f"-----> {app.name} is live at {self.app_url(app)}")
            out(f"-----> Done in {time.monotonic() - started:.1f}s")
            status, reason = "succeeded", None
        except _Rejected as rejected:
            reason = rejected.reason
            out(f"-----> Push rejected: {reason}")
        except Exception:
            log.failure("pipeline: deploy of {app} {commit} crashed", app=app.name, commit=commit)
            out("-----> Push rejected: internal error (see the server log)")
        finally:
            self._finish_build(build, status, out, version)
        return reason

    def app_url(self, app: App) -> str:
        return self.settings.app_url(app.name)

    def _build(self, app: App, repo_path: Path, commit: str, clean: bool,
               out: _Transcript) -> BuildResult:
        env = self._step("config", lambda: self.controller.current_config(app))
        request = BuildRequest(app=app.name, repo_path=repo_path, commit=commit,
                               env=dict(env), clean_cache=clean)
        try:
            return self._step("builder", lambda: self.builder.build(request, out))
        except BuildFailed as failed:
            if failed.message:
                out(f"       {failed.message}")
            raise _Rejected(failed.reason or "build failed") from None

    def _store_slug(self, app: App, commit: str, result: BuildResult,
                    out: _Transcript) -> Slug:
        key = f"{app.name}/{result.sha256}.tar.gz"
        try:
            self._step("slug store", lambda: self.slugs.put(key, result.slug_path))
        except SlugStoreFull as full:  # issue 14: stored slugs untouched, push rejected
            log.error("pipeline: slug store full storing {app} {commit}", app=app.name,
                      commit=commit)
            raise _Rejected(full.message) from None
        finally:
            Path(result.slug_path).unlink(missing_ok=True)
        out(f"-----> Slug stored ({result.size / 1e6:.1f} MB)")
        return self._step("slug record", lambda: self.controller.record_slug(
            app, key, result.sha256, result.size, commit,
            dict(result.process_types), list(result.buildpacks),
            unpacked_size=result.unpacked_size))

    def _release(self, app: App, slug: Slug, commit: str, push: Push,
                 out: _Transcript) -> Release:
        """The controller makes the release and deploys it, under the app's
        release lock (controller.builds.deploy_slug); the deploy's lines are
        not recorded as build lines (the deployer logs them itself)."""
        try:
            return self._step("release", lambda: self.controller.deploy_slug(
                app, slug, f"Deploy {commit[:7]}", push.user.email, out,
                hot=push.options.hot, slugs=self.slugs, deploy_output=out.unrecorded))
        except DeployFailed as failed:
            out(f"-----> Deploy failed: {failed.message}")
            for line in failed.log_tail:
                out(f"       {line}")
            raise _Rejected("deploy failed") from None

    @staticmethod
    def _step(what: str, call: Any) -> Any:
        """Run one step; a part that is not built yet rejects the push with a
        reason naming it (never a fake success), and a user-facing error
        rejects with its own message."""
        try:
            return call()
        except NotImplementedError:
            raise _Rejected(f"{what} not available on this server") from None
        except (BuildFailed, DeployFailed):
            raise
        except ShipwayError as err:
            raise _Rejected(err.message) from None

    # --- the build record ------------------------------------------------
    def _start_build(self, push: Push, update: RefUpdate, out: _Transcript) -> Build | None:
        try:
            return self.controller.start_build(push.app, push.user, update.ref, update.new)
        except NotImplementedError:
            return None  # history not available yet; the push still proceeds
        except Exception:
            log.failure("pipeline: could not record the build of {app}", app=push.app.name)
            return None

    def _finish_build(self, build: Build | None, status: str, out: _Transcript,
                      version: int | None) -> None:
        if build is None:
            return
        try:
            self.controller.finish_build(build.id, status, out.text(), version)
        except Exception:
            log.failure("pipeline: could not record the end of build {id}", id=build.id)
