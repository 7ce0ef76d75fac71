"""What both transports share: who may do what to which repository, and
how each git service is started. Transports stay thin: they authenticate,
then hand bytes to the objects made here."""
from __future__ import annotations

import os
from typing import Callable, Protocol

from controller.errors import NotFound
from controller.models import App, User
from controller.service import Controller
from core.settings import Settings
from gitd.ingest import Source
from gitd.receive import ReceivePack
from gitd.repos import RepoStore
from hooks.pipeline import Pipeline
from runner.interface import IRunner


class GitParts(Protocol):
    """The parts gitd uses (the composition root's Services has them)."""

    settings: Settings
    controller: Controller
    pipeline: Pipeline
    runner: IRunner

# git service name -> the access it needs on the app
SERVICES = {"git-receive-pack": "write", "git-upload-pack": "read"}


class GitService:
    def __init__(self, services: GitParts) -> None:
        self.services = services
        self.settings = services.settings
        self.controller = services.controller
        self.repos = RepoStore(self.settings.data_dir)

    def authenticate(self, email: str, key: str, client: str | None = None) -> User:
        """Blocking. HTTP Basic (email, API key; an empty email: the key
        alone), through the controller's throttle of failed logins, which
        the API shares: Unauthorized, or LoginThrottled (429) while locked."""
        if not email:
            return self.controller.user_for_api_key(key, client=client)
        return self.controller.user_for_email_and_key(email, key, client=client)

    def authorize(self, user: User, app_name: str, service: str) -> App:
        """Blocking. The same NotFound for an unknown app and for one the
        user may not use, so app names do not leak."""
        need = SERVICES.get(service)
        if need is None:
            raise NotFound(f"unknown service {service}")
        return self.controller.get_app(user, app_name, need)

    def receive_pack(self, app: App, user: User, *, source: Source,
                     read: Callable[[int], bytes], write: Callable[[bytes], None],
                     stateless: bool = False,
                     header_options: frozenset[str] = frozenset()) -> ReceivePack:
        return ReceivePack(pipeline=self.services.pipeline, repos=self.repos,
                           repo_bytes=self.settings.limits.repo_bytes, app=app, user=user,
                           source=source, read=read, write=write, stateless=stateless,
                           header_options=header_options,
                           blob_bytes=self.settings.limits.blob_bytes)

    def upload_pack_argv(self, app: App, *, stateless: bool = False,
                         advertise: bool = False) -> tuple[list[str], dict[str, str]]:
        """C git's upload-pack serves fetches: it is what git itself runs,
        and it streams packs from disk far faster than a Python packer."""
        path = self.repos.ensure(app.name)
        argv = ["git", "upload-pack", "--strict"]
        if stateless:
            argv.append("--stateless-rpc")
        if advertise:
            argv.append("--advertise-refs")
        argv.append(str(path))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        return argv, env


_by_services: dict[int, GitService] = {}


def git_service(services: GitParts) -> GitService:
    """One GitService per Services (HTTP builds a resource per request)."""
    found = _by_services.get(id(services))
    if found is None or found.services is not services:
        found = _by_services[id(services)] = GitService(services)
    return found


def parse_repo_arg(arg: str) -> str | None:
    """"/myapp.git", "myapp.git" or "myapp" -> "myapp"; None if malformed."""
    name = arg.strip().lstrip("/")
    if name.endswith(".git"):
        name = name[:-4]
    if name.endswith("/"):
        name = name[:-1]
    if not name or "/" in name or name.startswith(".") or len(name) > 63:
        return None
    return name
