"""Fetches a push asks for from the network: buildpacks named in
`.buildpacks` and git submodules, cloned with real git.

Only network URLs are fetched (https, http, git): a local path or a relative
URL would let a push read the server's own files or another app's repo, and
git runs with a throwaway HOME so no credentials of the server are offered.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("https", "http", "git")
GIT_TIMEOUT = 300


def safe_git(args: list[str], home: Path, timeout: int = GIT_TIMEOUT) -> subprocess.CompletedProcess:
    """Run git for a remote fetch: network protocols only, no prompts, no
    credentials from the server's home, bounded in time."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LANG": "C.UTF-8"}
    cmd = ["git", "-c", "protocol.allow=never"]
    for scheme in ALLOWED_SCHEMES:
        cmd += ["-c", f"protocol.{scheme}.allow=always"]
    return subprocess.run(cmd + args, env=env, capture_output=True, text=True,
                          errors="replace", timeout=timeout, check=False)


def check_remote_url(url: str) -> str | None:
    """Why `url` may not be fetched, or None if it may."""
    scheme = urlsplit(url).scheme
    if scheme not in ALLOWED_SCHEMES:
        return f"only {', '.join(ALLOWED_SCHEMES)} URLs can be fetched"
    return None


def fetch_commit(url: str, sha: str, dest: Path, home: Path) -> None:
    """Clone `url` bare into `dest` and make sure it holds `sha`."""
    reason = check_remote_url(url)
    if reason:
        raise RuntimeError(reason)
    done = safe_git(["clone", "--bare", "--quiet", url, str(dest)], home)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip()
                           else f"git clone exited {done.returncode}")
    if safe_git(["-C", str(dest), "cat-file", "-e", f"{sha}^{{commit}}"], home).returncode != 0:
        # Not reachable from a branch: ask for the commit itself.
        got = safe_git(["-C", str(dest), "fetch", "--quiet", "origin", sha], home)
        if got.returncode != 0:
            raise RuntimeError(f"commit {sha[:12]} not found there")
