"""Fixtures for the controller's service-level tests: a real store on a
fresh SQLite file or PostgreSQL database (the `database_url` fixture)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from controller.deploys import DesiredState, Deployer
from controller.models import App, User
from controller.store import Store, open_controller
from core.settings import Settings
from runner.memory import MemoryRunner


@pytest.fixture
def open_store(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Store]]:
    """Open (or reopen) the store on this test's database and data dir."""
    opened: list[Store] = []

    def make(**kw: Any) -> Store:
        settings = Settings(data_dir=tmp_path / "data", database_url=database_url, **kw)
        store = open_controller(settings)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., Store]) -> Store:
    return open_store()


@pytest.fixture
def owner(store: Store) -> User:
    return store.signup("owner@example.com", "owner-password")[0]


@pytest.fixture
def app(store: Store, owner: User) -> App:
    return store.create_app(owner, "demo-app")


class RecordingDeployer(Deployer):
    """The real Deployer over the in-memory runner (runner/memory.py), so
    every deploy builds a real release spec and runs real (in-memory)
    replicas; it records what the controller asked of it, and raises
    `fail_with` from deploy when set (an injected fault)."""

    def __init__(self, store: Store) -> None:
        self.memory = MemoryRunner(state=DesiredState(store.settings, store))
        super().__init__(store.settings, controller=store, runner=self.memory)
        self.store = store
        self.fail_with: BaseException | None = None
        self.deployed: list[tuple[str, int]] = []
        self.status_during_deploy: list[str] = []
        self.formations: list[str] = []
        self.restarts: list[str] = []
        self.destroyed: list[str] = []
        self.routes: list[str] = []

    def deploy(self, app: App, release: Any, output: Callable[[str], None],
               hot: bool = False) -> bool:
        self.status_during_deploy.append(self.store.get_release(app, release.version).status)
        output(f"deploying v{release.version}")
        self.deployed.append((app.name, release.version))
        if self.fail_with is not None:
            raise self.fail_with
        return super().deploy(app, release, output, hot=hot)

    def apply_formation(self, app: App, output: Callable[[str], None]) -> None:
        self.formations.append(app.name)
        super().apply_formation(app, output)

    def restart(self, app: App, output: Callable[[str], None]) -> None:
        self.restarts.append(app.name)
        super().restart(app, output)

    def destroy(self, app: App) -> None:
        self.destroyed.append(app.name)
        super().destroy(app)

    def refresh_route(self, app: App) -> None:
        self.routes.append(app.name)
        super().refresh_route(app)


@pytest.fixture
def deployer(store: Store) -> RecordingDeployer:
    d = RecordingDeployer(store)
    store.set_deployer(d)
    return d


@pytest.fixture
def live_app(store: Store, owner: User, app: App, deployer: RecordingDeployer) -> App:
    """An app with a slug and a succeeded v1."""
    slug = store.record_slug(app, f"{app.name}/a.tgz", "a" * 64, 100, "c0ffee",
                             {"web": "python app.py", "worker": "python worker.py"}, ["python"])
    store.deploy_release(app, store.create_release(app, slug, "Deploy c0ffee", owner.email))
    return app
