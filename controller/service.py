"""The controller's service layer: the one door to Shipway's state.

The API, gitd, hooks and the runner call these methods; nothing else touches
the tables. Methods are synchronous and thread-safe: Twisted callers run them
with `deferToThread`. `user` arguments are the authenticated caller; methods
that take one enforce permissions themselves (an app the caller cannot see is
`NotFound`, never `Forbidden`, so names do not leak).

CONTRACT (skeleton): signatures and docstrings here are the contract between
parts; the bodies are filled in by the controller work.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol

from controller.models import (
    App, AppSecrets, Build, Domain, Release, Slug, SshKey, User,
)
from core.output import Output
from storage.interface import ISlugStore

if TYPE_CHECKING:  # their modules build on this contract (controller/base.py)
    from controller.activity import Activity
    from controller.webhooks import Webhook
    from sqlalchemy.engine import Connection

Need = Literal["read", "write", "owner"]


class Deployer(Protocol):
    """Makes a release live (see `controller/deploys.py`). Raises DeployFailed."""

    def deploy(self, app: App, release: Release, output: Output,
               hot: bool = False) -> bool: ...  # True: went live hot (in place)

    def apply_formation(self, app: App, output: Output) -> None: ...

    def restart(self, app: App, output: Output) -> None: ...

    def destroy(self, app: App) -> None: ...

    def refresh_route(self, app: App) -> None:
        """Re-render the app's route (after a domain change)."""
        ...


class Controller:
    """Facade over users, keys, apps, access, config, slugs, releases,
    formation, domains and builds."""

    def set_deployer(self, deployer: Deployer) -> None:
        """Wired once by the composition root (the deployer needs the
        controller, so it cannot be a constructor argument)."""
        raise NotImplementedError

    def rotate_master_key(self) -> int:
        """Re-encrypt every config value and snapshot under a new master key;
        returns how many values were re-encrypted."""
        raise NotImplementedError

    # --- users and authentication -------------------------------------
    def signup(self, email: str, password: str) -> tuple[User, str]:
        """Create a user; returns it and its API key."""
        raise NotImplementedError

    def login(self, email: str, password: str, client: str | None = None) -> tuple[User, str]:
        """Check the password; returns the user and its (current) API key.
        Password logins are throttled per account and per `client` address,
        API-key checks per address only (controller/login_throttle.py):
        LoginThrottled, a 429."""
        raise NotImplementedError

    def user_for_api_key(self, api_key: str, client: str | None = None) -> User:
        """Raises Unauthorized for an unknown key."""
        raise NotImplementedError

    def user_for_email_and_key(self, email: str, api_key: str,
                               client: str | None = None) -> User:
        """HTTP Basic: the key must belong to that email. Raises Unauthorized."""
        raise NotImplementedError

    def user_for_ssh_key(self, key_blob: bytes) -> User | None:
        """The user owning this public key (wire-format blob), if any."""
        raise NotImplementedError

    def reset_api_key(self, user: User) -> str:
        """New key; the old one stops working at once."""
        raise NotImplementedError

    def list_ssh_keys(self, user: User) -> list[SshKey]:
        raise NotImplementedError

    def add_ssh_key(self, user: User, public_key: str) -> SshKey:
        """Validates an authorized_keys line. BadRequest if invalid, Conflict if
        any user already has it, BadRequest over the per-user limit."""
        raise NotImplementedError

    def remove_ssh_key(self, user: User, key_id_or_fingerprint: str) -> None:
        raise NotImplementedError

    # --- apps and access ----------------------------------------------
    def create_app(self, user: User, name: str | None = None) -> App:
        """DNS-label name (generated when None); Conflict if taken."""
        raise NotImplementedError

    def list_apps(self, user: User) -> list[App]:
        """Apps the user owns or collaborates on."""
        raise NotImplementedError

    def get_app(self, user: User, name: str, need: Need = "read") -> App:
        """NotFound if missing or invisible to the user; Forbidden if visible
        but `need` is "owner" and the user is a collaborator."""
        raise NotImplementedError

    def app_by_name(self, name: str) -> App:
        """Internal lookup without permission checks. NotFound if missing."""
        raise NotImplementedError

    def all_apps(self) -> list[App]:
        """Internal: every app (for supervision and router rendering)."""
        raise NotImplementedError

    def destroy_app(self, user: User, name: str) -> None:
        """Owner only. Stops and removes everything (via the deployer and the
        destroy hooks registered with `on_destroy`)."""
        raise NotImplementedError

    def on_destroy(self, hook: Callable[[App], None]) -> None:
        """Register cleanup run when an app is destroyed (repo, slugs, cache)."""
        raise NotImplementedError

    def list_collaborators(self, user: User, app: str) -> list[str]:
        raise NotImplementedError

    def add_collaborator(self, user: User, app: str, email: str) -> None:
        raise NotImplementedError

    def remove_collaborator(self, user: User, app: str, email: str) -> None:
        raise NotImplementedError

    def authorized_keys(self, app: App) -> list[str]:
        """authorized_keys lines of everyone allowed on the app."""
        raise NotImplementedError

    def app_secrets(self, app: App) -> AppSecrets:
        raise NotImplementedError

    def ssh_host_key(self, app: App) -> str:
        """The private SSH host key every replica of the app presents (made
        and stored, encrypted, on first need)."""
        raise NotImplementedError

    # --- config ---------------------------------------------------------
    def get_config(self, user: User, app: str) -> dict[str, str]:
        raise NotImplementedError

    def set_config(self, user: User, app: str, values: dict[str, str],
                   output: Output | None = None) -> Release | None:
        """Validates names and the size limit; creates and deploys a new
        release when the app has a slug."""
        raise NotImplementedError

    def unset_config(self, user: User, app: str, keys: list[str],
                     output: Output | None = None) -> Release | None:
        raise NotImplementedError

    # --- slugs and releases ---------------------------------------------
    def record_slug(self, app: App, storage_key: str, sha256: str, size: int,
                    commit: str, process_types: dict[str, str],
                    buildpacks: list[str], unpacked_size: int | None = None) -> Slug:
        raise NotImplementedError

    def get_slug(self, slug_id: int) -> Slug:
        raise NotImplementedError

    def list_slugs(self, app: App) -> list[Slug]:
        raise NotImplementedError

    def create_release(self, app: App, slug: Slug | None, description: str,
                       created_by: str) -> Release:
        """Next version (never reused, safe under concurrency) with the slug
        and a snapshot of the current config; status "pending"."""
        raise NotImplementedError

    def deploy_slug(self, app: App, slug: Slug, description: str, created_by: str,
                    output: Output | None = None, hot: bool = False,
                    slugs: ISlugStore | None = None,
                    deploy_output: Output | None = None) -> Release:
        """Push → release → deploy, the one call of the pipeline: under the
        app's release lock, a release of `slug` with the current config,
        deployed (hot or restart), then unused slugs pruned from `slugs`."""
        raise NotImplementedError

    def deploy_release(self, app: App, release: Release, output: Output | None = None,
                       hot: bool = False, on_success: Any = None) -> Release:
        """Marks it deploying, calls the deployer, marks succeeded (running
        `on_success(conn)` in that same transaction) or failed
        (re-raising DeployFailed). The one path every deploy goes through;
        `hot` asks for an in-place upgrade of the running replicas."""
        raise NotImplementedError

    def list_releases(self, user: User, app: str) -> list[Release]:
        raise NotImplementedError

    def fail_interrupted(self, deploying: bool = True) -> tuple[int, int]:
        """At server start: releases still pending/deploying and builds still
        running were cut off by a crash; mark them failed so history never
        shows work in progress that nothing is doing. (releases, builds).
        `deploying=False` leaves the deploying ones to controller/settle.py."""
        raise NotImplementedError

    def get_release(self, app: App, version: int) -> Release:
        raise NotImplementedError

    def current_release(self, app: App) -> Release | None:
        """The newest succeeded release (what is live)."""
        raise NotImplementedError

    def rollback(self, user: User, app: str, version: int | None = None,
                 output: Output | None = None) -> Release:
        """New release with the slug and config of `version` (default: the
        succeeded release before the current one), deployed."""
        raise NotImplementedError

    def release_env(self, app: App, release: Release) -> dict[str, str]:
        """The run environment: the release's config snapshot plus APP_NAME,
        APP_VERSION, RELEASE_COOKIE, RELEASE_NODE, MY_NODE_NAME,
        SECRET_KEY_BASE (PORT is the runner's)."""
        raise NotImplementedError

    def current_config(self, app: App) -> dict[str, str]:
        """Internal: decrypted config (for the build's ENV_DIR)."""
        raise NotImplementedError

    # --- formation --------------------------------------------------------
    def get_formation(self, app: App) -> dict[str, int]:
        """Replica count per process type (web defaults to 1)."""
        raise NotImplementedError

    def scale(self, user: User, app: str, counts: dict[str, int],
              output: Output | None = None) -> dict[str, int]:
        raise NotImplementedError

    def release_lock(self, app: App) -> Any:
        """Internal: a lock held from making a release of `app` to the end
        of its deploy, and around scale, restart and resize."""
        raise NotImplementedError

    def serialized(self, app: App, output: Output | None = None) -> Any:
        """Internal: a context holding `release_lock(app)`; it says on
        `output` when it has to wait for another deploy of the app."""
        raise NotImplementedError

    def resize(self, user: User, app: str, size: object,
               output: Output | None = None) -> App:
        """Set each replica's size (GiB of memory and CPUs; None: the
        server's defaults) and restart the replicas at it."""
        raise NotImplementedError

    def restart(self, user: User, app: str, output: Output | None = None) -> None:
        raise NotImplementedError

    # --- domains -----------------------------------------------------------
    def list_domains(self, user: User, app: str) -> list[Domain]:
        raise NotImplementedError

    def app_domains(self, app: App) -> list[str]:
        """Internal: custom hostnames of an app."""
        raise NotImplementedError

    def add_domain(self, user: User, app: str, hostname: str) -> Domain:
        """Conflict when another account holds a name of the same
        registrable domain; unverified (not routed) with domain_verify=dns."""
        raise NotImplementedError

    def verify_domain(self, user: User, app: str, hostname: str) -> Domain:
        """Check the name's DNS TXT challenge; verified names are routed."""
        raise NotImplementedError

    def remove_domain(self, user: User, app: str, hostname: str) -> None:
        raise NotImplementedError

    # --- builds (push history) ---------------------------------------------
    def start_build(self, app: App, user: User, ref: str, commit: str) -> Build:
        raise NotImplementedError

    def finish_build(self, build_id: int, status: str, output: str,
                     release_version: int | None = None) -> Build:
        raise NotImplementedError

    def list_builds(self, user: User, app: str) -> list[Build]:
        raise NotImplementedError

    def build_for_release(self, app: App, release: Release) -> Build | None:
        """The push's build behind `release` (`releases:info vN` shows its
        output); None for rollbacks and config changes."""
        raise NotImplementedError

    # --- activity (issue 18 item 5) ------------------------------------------
    def record_activity(self, app: App, actor: str, action: str, summary: str,
                        detail: dict[str, Any] | None = None,
                        conn: "Connection | None" = None) -> None:
        """Internal: record who did what. With `conn`, inside that
        transaction (recorded exactly when the change commits); without, in
        its own, and a failure is logged, never raised. Config changes name
        the variables, never their values."""
        raise NotImplementedError

    def list_activity(self, user: User, app: str, limit: int = 50) -> list["Activity"]:
        """Newest first, at most `limit` (1..5000, else BadRequest); owner
        and collaborators only."""
        raise NotImplementedError

    # --- deploy webhooks (issue 18 item 7) -------------------------------------
    def list_webhooks(self, user: User, app: str) -> list["Webhook"]:
        raise NotImplementedError

    def add_webhook(self, user: User, app: str, url: object) -> "Webhook":
        """Write access. The URL follows the fetch guard (no loopback,
        private or link-local address unless SHIPWAY_FETCH_ALLOW allows it;
        https only otherwise): BadRequest. The answer carries the signing
        secret, the only time anyone sees it."""
        raise NotImplementedError

    def remove_webhook(self, user: User, app: str, which: str) -> "Webhook":
        """`which`: the id `webhooks` shows, or the URL. NotFound if none."""
        raise NotImplementedError

    def notify_release(self, app: App, release: Release) -> None:
        """Internal: queue a signed POST to each webhook for a release that
        succeeded or failed. Never raises, never waits for a receiver."""
        raise NotImplementedError

    def close_webhooks(self) -> None:
        """Internal: stop the webhook sender (at close)."""
        raise NotImplementedError
