"""Value objects the service layer hands out. Frozen: a caller cannot change
state except through the service layer."""
from __future__ import annotations

import datetime as dt
from typing import Literal

import attrs

Role = Literal["owner", "collaborator"]
ReleaseStatus = Literal["pending", "deploying", "succeeded", "failed"]
BuildStatus = Literal["running", "succeeded", "failed"]


@attrs.frozen
class User:
    id: int
    email: str
    created_at: dt.datetime


@attrs.frozen
class SshKey:
    id: int
    user_id: int
    fingerprint: str  # "SHA256:..." as ssh-keygen -l prints it
    key_type: str  # "ssh-ed25519", "ssh-rsa", ...
    public_key: str  # one authorized_keys line: "<type> <base64> [comment]"
    comment: str
    created_at: dt.datetime


@attrs.frozen
class App:
    id: int
    name: str
    owner_id: int
    owner_email: str
    created_at: dt.datetime
    replica_size: float | None = None  # ps:scale --size; None: the server's defaults


@attrs.frozen
class Slug:
    id: int
    app_id: int
    storage_key: str
    sha256: str
    size: int
    commit: str
    process_types: dict[str, str]
    buildpacks: list[str]
    created_at: dt.datetime
    unpacked_size: int | None = None  # the tar's bytes; None for older slugs
    pruned: bool = False  # deleted from the slug store (controller/slug_pruning.py)


@attrs.frozen
class Release:
    id: int
    app_id: int
    app_name: str
    version: int
    slug_id: int | None
    commit: str | None
    process_types: dict[str, str]
    description: str
    status: ReleaseStatus
    created_by: str  # email, or "shipway" for system-made releases
    created_at: dt.datetime
    slug_pruned: bool = False  # its slug was pruned: no rollback to it
    hot: bool = False  # went live hot: the running replicas upgraded in place (issue 17)


@attrs.frozen
class Domain:
    id: int
    app_id: int
    hostname: str
    created_at: dt.datetime
    # SHIPWAY_DOMAIN_VERIFY=dns: False until the TXT challenge (name, value)
    # is found; an unverified name is not routed.
    verified: bool = True
    challenge: tuple[str, str] | None = None


@attrs.frozen
class Build:
    id: int
    app_id: int
    ref: str
    commit: str
    user_email: str
    status: BuildStatus
    output: str
    release_version: int | None
    started_at: dt.datetime
    finished_at: dt.datetime | None


@attrs.frozen
class AppSecrets:
    """Per-app values generated once and kept stable across releases."""

    release_cookie: str
    secret_key_base: str
    node_basename: str  # RELEASE_NODE is "<node_basename>@<host>"
    # The replicas' SSH host key (OpenSSH private key): one per app, so that
    # `ps:ssh` can check it; empty for apps made before it (see ssh_host_key).
    ssh_host_key: str = ""
