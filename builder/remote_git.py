"""Fetches a push asks for from the network: buildpacks named in
`.buildpacks` and git submodules, cloned with real git.

Everything a push names is hostile: URLs are checked before git sees them
(https, http or git only, no options, `--` before them), refs must be ref
names by git's rules or a commit sha, and git runs with a throwaway HOME,
no prompts, a deadline shared by all of one build's fetches, and the fetch
guard (builder/fetch_guard.py) as its only way to the network. git's own
stderr never reaches the pusher: a failure is said in our words
(builder/fetch_words.py), with credentials taken out of every URL shown.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from builder import git_proxy_command
from builder.fetch_guard import GuardProxy, GuardRules, parse_allow
from builder.fetch_words import describe_failure, redact_url
from builder.errors import BuildFailed

ALLOWED_SCHEMES = ("https", "http", "git")
_POLICY_FILE = "fetch-policy.json"
_HOST = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?", re.IGNORECASE)
_SHA = re.compile(r"[0-9a-f]{4,40}", re.IGNORECASE)
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


@attrs.frozen
class FetchPolicy:
    """The rules of one build's fetches: which private hosts the operator
    allows, the connect timeout, and when all fetches must be done (wall
    clock), so a push holds its app's lock for at most that long."""

    allow: str = ""
    connect_timeout: float = 10.0
    deadline: float = attrs.field(factory=lambda: time.time() + 120)

    @classmethod
    def for_build(cls, allow: str, connect_timeout: float, total_timeout: float) -> "FetchPolicy":
        parse_allow(allow)  # a bad entry fails the build before any fetch
        return cls(allow, float(connect_timeout), time.time() + total_timeout)

    def rules(self) -> GuardRules:
        return GuardRules(parse_allow(self.allow), self.connect_timeout, self.connect_timeout)


def fetch_home(work: Path, policy: FetchPolicy | None = None) -> Path:
    """The throwaway HOME of a build's fetches, `work/git-home`; given a
    policy, it is stored there for every fetch of the build (buildpacks and
    submodules alike). Without one stored, the default (nothing private
    allowed, 10 s to connect, 120 s in all from the first fetch) applies."""
    home = work / "git-home"
    home.mkdir(exist_ok=True)
    if policy is not None:
        (home / _POLICY_FILE).write_text(json.dumps(attrs.asdict(policy)))
    return home


def _policy(home: Path) -> FetchPolicy:
    path = home / _POLICY_FILE
    if not path.is_file():
        policy = FetchPolicy()
        path.write_text(json.dumps(attrs.asdict(policy)))
        return policy
    return FetchPolicy(**json.loads(path.read_text()))


def check_remote_url(url: str) -> str | None:
    """Why `url` may not be fetched, or None if it may."""
    if not url or len(url) > 2048 or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127
                                         for ch in url):
        return "not a URL"
    parts = urlsplit(url)
    if parts.scheme not in ALLOWED_SCHEMES:
        return f"only {', '.join(ALLOWED_SCHEMES)} URLs can be fetched"
    try:
        host, _port = parts.hostname, parts.port
    except ValueError:
        return "the URL's port is not a number"
    if not host:
        return "the URL names no host"
    if not (_HOST.fullmatch(host) or (":" in host and re.fullmatch(r"[0-9a-f:.]+", host))):
        return "the URL's host is not a host name or address"
    return None


def check_ref(ref: str) -> str | None:
    """Why `ref` is not a ref name by git's check-ref-format rules (one
    level allowed) nor a 4-40 digit commit sha, or None if it is one.
    Nothing starting with `-` passes: git would read it as an option."""
    if _SHA.fullmatch(ref):
        return None
    if (not ref or len(ref) > 255 or ref.startswith(("-", "/")) or ref.endswith(("/", "."))
            or ".." in ref or "//" in ref or "@{" in ref or ref == "@"
            or _BAD_REF_CHARS.search(ref)
            or any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/"))):
        return "not a branch, tag or commit name"
    return None


class RemoteGit:
    """git for one fetch, behind its own fetch guard."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.policy = _policy(home)
        self.guard = GuardProxy(self.policy.rules())

    def __enter__(self) -> "RemoteGit":
        self.guard.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.guard.__exit__(*exc)

    def _proxy_command(self) -> str:
        """An executable git runs with HOST PORT for each git:// connection."""
        path = self.home / "git-proxy"
        if not path.exists():
            path.write_text("#!/bin/sh\nexec {} {} {} \"$@\"\n".format(
                shlex.quote(sys.executable), shlex.quote(git_proxy_command.__file__),
                "\"$SHIPWAY_GUARD_PORT\""))
            path.chmod(0o700)
        return str(path)

    def run(self, args: list[str]) -> subprocess.CompletedProcess:
        """Run git; past the build's fetch deadline, kill it and its helpers."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
               "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LANG": "C.UTF-8",
               "GIT_PROXY_COMMAND": self._proxy_command(),
               "SHIPWAY_GUARD_PORT": str(self.guard.port)}
        cmd = ["git", "-c", "protocol.allow=never", "-c", f"http.proxy={self.guard.url}",
               "-c", "http.lowSpeedLimit=1000",
               "-c", f"http.lowSpeedTime={max(1, int(self.policy.connect_timeout * 2))}"]
        for scheme in ALLOWED_SCHEMES:
            cmd += ["-c", f"protocol.{scheme}.allow=always"]
        left = self.policy.deadline - time.time()
        if left <= 0:
            raise subprocess.TimeoutExpired(cmd + args, 0)
        proc = subprocess.Popen(cmd + args, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", start_new_session=True)
        try:
            out, err = proc.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def failure(self, done: Any) -> str:
        """Why the fetch failed, in our words (never git's stderr)."""
        if self.guard.refusals:
            return self.guard.refusals[0]
        if isinstance(done, subprocess.TimeoutExpired):
            return "timed out"
        if self.guard.failures:
            return self.guard.failures[-1]
        return describe_failure(done.stderr or "", done.returncode)


def fetch_commit(url: str, sha: str, dest: Path, home: Path, name: str | None = None) -> None:
    """Clone `url` bare into `dest` and make sure it holds `sha`.

    Raises BuildFailed (for submodule `name`) with a message fit for the
    pusher: the URL without credentials, what failed in our words."""
    shown = redact_url(url)

    def failed(why: str) -> BuildFailed:
        label = f"submodule {name}" if name else "submodule"
        return BuildFailed(f"{label} ({shown}) could not be fetched: {why}",
                           reason=f"{label} failed")

    reason = check_remote_url(url)
    if reason:
        raise failed(reason)
    if not _SHA.fullmatch(sha) or len(sha) != 40:
        raise failed("the gitlink is not a commit sha")
    with RemoteGit(home) as git:
        try:
            done = git.run(["clone", "--bare", "--quiet", "--", url, str(dest)])
            if done.returncode != 0:
                raise failed(git.failure(done))
            check = git.run(["-C", str(dest), "cat-file", "-e", f"{sha}^{{commit}}"])
            if check.returncode != 0:
                # Not reachable from a branch: ask for the commit itself.
                got = git.run(["-C", str(dest), "fetch", "--quiet", "--", "origin", sha])
                if got.returncode != 0:
                    raise failed(f"commit {sha[:12]} not found there")
        except subprocess.TimeoutExpired as e:
            raise failed(git.failure(e)) from None


def clone_ref(url: str, ref: str, dest: Path, home: Path) -> str | None:
    """Clone `url` at `ref` (branch, tag or commit; the default branch if
    empty) into `dest`. Returns None, or why it failed in our words."""
    with RemoteGit(home) as git:
        try:
            args = ["clone", "--quiet", "--depth", "1"]
            done = git.run(args + ([f"--branch={ref}"] if ref else []) + ["--", url, str(dest)])
            if done.returncode != 0 and ref and _SHA.fullmatch(ref) and not git.guard.refusals:
                # A commit sha, not a branch or tag: the whole history, then the commit.
                done = git.run(["clone", "--quiet", "--no-checkout", "--", url, str(dest)])
                if done.returncode == 0:
                    found = git.run(["-C", str(dest), "rev-parse", "--verify", "--quiet",
                                     f"{ref}^{{commit}}"])
                    if found.returncode != 0:
                        return "ref not found"
                    done = git.run(["-C", str(dest), "checkout", "--quiet", "--detach",
                                    found.stdout.strip(), "--"])
            return None if done.returncode == 0 else git.failure(done)
        except subprocess.TimeoutExpired as e:
            return git.failure(e)
