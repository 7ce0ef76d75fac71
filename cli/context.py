"""Where the CLI finds what it needs: the server URL, the credentials (its
own config file, `~/.netrc`), and the app (`-a`, or the `shipway` git remote
of the current repository)."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

DEFAULT_URL = "http://127.0.0.1:5000"
REMOTE = "shipway"


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.UsageError(f"invalid server URL {url!r} (expected http://HOST:PORT)")
    return url


def host_of(url: str) -> str:
    """The host name `~/.netrc` entries are keyed by (netrc has no ports)."""
    return urlsplit(url).hostname or ""


def home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def config_dir() -> Path:
    given = os.environ.get("SHIPWAY_CONFIG_DIR")
    return Path(given) if given else home() / ".config" / "shipway"


def netrc_path() -> Path:
    return Path(os.environ.get("NETRC") or home() / ".netrc")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically."""
    from core.private_files import write_private as write_secret

    write_secret(path, text.encode("utf-8"))


# --- the CLI's own config ---------------------------------------------------

def load_config() -> dict[str, Any]:
    path = config_dir() / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"servers": {}}
    except (OSError, ValueError) as e:
        raise click.ClickException(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("servers", {}), dict):
        raise click.ClickException(f"{path} is not a Shipway config file")
    data.setdefault("servers", {})
    return data


def save_credentials(url: str, email: str, api_key: str) -> None:
    data = load_config()
    data["servers"][url] = {"email": email, "api_key": api_key}
    write_private(config_dir() / "config.json", json.dumps(data, indent=2) + "\n")
    set_netrc_entry(host_of(url), email, api_key)


def forget_credentials(url: str) -> bool:
    """Remove the credentials for `url` from the config and `~/.netrc`."""
    data = load_config()
    had = data["servers"].pop(url, None) is not None
    if had:
        write_private(config_dir() / "config.json", json.dumps(data, indent=2) + "\n")
    return remove_netrc_entry(host_of(url)) or had


def credentials(url: str) -> tuple[str | None, str | None]:
    """(email, api key): SHIPWAY_API_KEY, else the config, else ~/.netrc."""
    key = os.environ.get("SHIPWAY_API_KEY")
    if key:
        return None, key
    entry = load_config()["servers"].get(url)
    if isinstance(entry, dict) and entry.get("api_key"):
        return entry.get("email"), entry["api_key"]
    found = netrc_entry(host_of(url))
    return found if found else (None, None)


# --- ~/.netrc -------------------------------------------------------------------
# A small token-level editor: it removes and adds one `machine` entry and keeps
# everything else in the file as it was (comments, other hosts, macros).

_TOKEN = re.compile(r"\S+")


def _entries(text: str) -> list[tuple[str | None, int, int]]:
    """(host or None for default/macdef, start, end) spans of the entries."""
    tokens = [(m.group(), m.start()) for m in _TOKEN.finditer(text)]
    starts: list[tuple[str | None, int]] = []
    i = 0
    while i < len(tokens):
        word, pos = tokens[i]
        if word == "machine" and i + 1 < len(tokens):
            starts.append((tokens[i + 1][0], pos))
            i += 2
            continue
        if word == "default":
            starts.append((None, pos))
        elif word == "macdef":
            starts.append((None, pos))
            end = text.find("\n\n", pos)
            end = len(text) if end < 0 else end
            while i < len(tokens) and tokens[i][1] < end:
                i += 1
            continue
        i += 1
    spans = []
    for n, (host, start) in enumerate(starts):
        end = starts[n + 1][1] if n + 1 < len(starts) else len(text)
        spans.append((host, start, end))
    return spans


def netrc_entry(host: str) -> tuple[str | None, str | None] | None:
    try:
        text = netrc_path().read_text()
    except OSError:
        return None
    for found, start, end in _entries(text):
        if found == host:
            words = text[start:end].split()
            pairs = dict(zip(words[2::2], words[3::2]))
            return pairs.get("login"), pairs.get("password")
    return None


def remove_netrc_entry(host: str) -> bool:
    path = netrc_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return False
    kept, removed, last = [], False, 0
    for found, start, end in _entries(text):
        if found == host:
            kept.append(text[last:start])
            last, removed = end, True
    if removed:
        kept.append(text[last:])
        write_private(path, "".join(kept))
    return removed


def set_netrc_entry(host: str, login: str, password: str) -> None:
    """Replace the entry for `host` (git and curl read it for HTTP auth)."""
    if any(c.isspace() for c in host + login + password):
        raise click.ClickException("cannot write a netrc entry with spaces in it")
    remove_netrc_entry(host)
    path = netrc_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    if text and not text.endswith("\n"):
        text += "\n"
    text += f"machine {host} login {login} password {password}\n"
    write_private(path, text)


# --- the app -------------------------------------------------------------------------

def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def in_git_repo() -> bool:
    return _git("rev-parse", "--is-inside-work-tree") == "true"


def app_from_remote() -> str | None:
    url = _git("remote", "get-url", REMOTE)
    if not url:
        return None
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return name[:-4] if name.endswith(".git") else name or None


def set_git_remote(url: str) -> str:
    """Add or update the `shipway` remote; returns "added" or "updated"."""
    if _git("remote", "get-url", REMOTE) is not None:
        if _git("remote", "set-url", REMOTE, url) is None:
            raise click.ClickException("could not update the shipway git remote")
        return "updated"
    if _git("remote", "add", REMOTE, url) is None:
        raise click.ClickException("could not add the shipway git remote")
    return "added"


def resolve_app(app: str | None) -> str:
    if app:
        return app
    found = app_from_remote()
    if not found:
        raise click.UsageError(
            "no app given: pass -a APP, or run inside a git repository with a "
            f"'{REMOTE}' remote")
    return found
