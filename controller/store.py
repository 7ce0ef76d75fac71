"""`open_controller`: the concrete service layer, assembled from one mixin
per resource module over one database and one keyring. The mixins stack in
a line (access → apps → releases → config → formation → domains → builds,
plus users and keys) because later resources use earlier ones' helpers.

`controller/service.py` stays the readable contract; this module only wires.
"""
from __future__ import annotations

import threading

from controller.builds import BuildsMixin
from controller.crypto import Keyring, load_api_key_secret
from controller.db import Database
from controller.keys import KeysMixin
from controller.migrations import migrate
from controller.users import UsersMixin
# issue 18 items 5 and 7: activity and deploy webhooks
from controller.activity import ActivityMixin
from controller.webhooks import WebhooksMixin
from core.locks import make_locks
from core.settings import Settings


class Store(UsersMixin, KeysMixin, BuildsMixin, ActivityMixin, WebhooksMixin):
    """The controller service on SQLite or PostgreSQL (see the mixins)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.keyring = Keyring(settings.data_dir, settings.master_key)
        self.api_key_secret = load_api_key_secret(settings.data_dir, settings.api_key_secret)
        self.db = Database(settings.effective_database_url)
        migrate(self.db)
        self._deployer = None
        self._destroy_hooks = []
        self._hooks_lock = threading.Lock()
        # Per-app locks held across processes (core/locks.py).
        self.locks = make_locks(settings)

    def close(self) -> None:
        """Release database connections (tests reopen the same database)."""
        self.close_webhooks()  # issue 18: the webhook workers end
        self.db.dispose()


def open_controller(settings: Settings) -> Store:
    """Open (and migrate to the newest schema) the controller's database."""
    return Store(settings)
