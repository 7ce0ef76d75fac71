"""What a failed fetch tells the pusher, in our words.

git's stderr is never passed on: it can hold anything the remote, the URL or
a file git was tricked into reading put there. It is only matched against
known failures; and every URL shown loses its credentials (userinfo, query).
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# First match wins: (what git or curl says, lowercased) -> what we say.
_KNOWN = (
    (("timed out", "operation too slow", "timeout"), "timed out"),
    (("could not resolve host", "name or service not known", "host not found"),
     "host not found"),
    (("connection refused", "failed to connect", "couldn't connect"), "connection refused"),
    (("remote branch", "couldn't find remote ref", "did not match any", "unknown revision",
      "not a valid object", "invalid reference", "not our ref"), "ref not found"),
    (("authentication failed", "could not read username", "could not read password",
      "returned error: 401", "returned error: 403"), "access denied"),
    (("repository not found", "not found", "returned error: 404",
      "does not appear to be a git repository", "not a git repository",
      "access denied or repository not exported", "no such repository"),
     "repository not found"),
    (("ssl", "certificate", "tls"), "TLS problem (certificate not trusted?)"),
    (("empty reply", "connection reset", "hung up", "early eof", "unexpected disconnect"),
     "the server closed the connection"),
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def describe_failure(stderr: str, returncode: int) -> str:
    """A one-line reason for a failed git command, never its text."""
    text = stderr.lower()
    for needles, words in _KNOWN:
        if any(needle in text for needle in needles):
            return words
    return f"git failed (exit {returncode})"


def redact_url(url: str) -> str:
    """`url` as it may be shown or stored: no user or password, no query
    (tokens live there), no fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return redact(url.split("?", 1)[0].split("#", 1)[0])
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact(text: str) -> str:
    """Any URL's userinfo in free text removed."""
    return _USERINFO.sub(r"\1", text)
