"""How a run container reaches its slug and its app's SSH keys: URLs signed
by Shipway on the host's gateway listener (runner/gateway.py), whatever the
slug store. A store elsewhere (S3) may not be reachable from a container
(an endpoint on 127.0.0.1 is not), so the slugs this runner runs are
cached on the host, a few per app.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from core.settings import Settings
from core.specs import ReleaseSpec
from runner.gateway import KeySigner, bridge_gateway, gateway_url, rebase_url
from storage.interface import ISlugStore
from storage.local import LocalSlugStore

# Slugs of a store elsewhere kept on the host per app: the current release,
# a rollback target or two, and a deploy in progress.
SLUG_CACHE_PER_APP = 5


class SlugAccess:
    """`client()` is the runner's Docker client (asked only at the first
    URL, for the bridge's gateway address)."""

    def __init__(self, settings: Settings, slugs: ISlugStore, client: Callable[[], Any]) -> None:
        self.settings = settings
        self.slugs = slugs
        self.local_slugs: LocalSlugStore = (
            slugs if isinstance(slugs, LocalSlugStore)
            else LocalSlugStore(settings, root=settings.data_dir / "slug-cache"))
        self._client = client
        self._gateway: str | None = None
        self._signer: KeySigner | None = None

    def urls(self, spec: ReleaseSpec) -> tuple[str, str]:
        """The slug's signed URL and the app's keys URL, both reachable from
        inside a container (through the bridge gateway listener)."""
        if self._gateway is None:
            self._gateway = bridge_gateway(self._client())
            self._signer = KeySigner(self.settings)
        assert self._signer is not None
        self.cache_slug(spec)
        slug_url = rebase_url(self.local_slugs.url(spec.slug_key, expires_in=900),
                              self.settings, self._gateway)
        keys_url = self._signer.url(gateway_url(self.settings, self._gateway), spec.app)
        return slug_url, keys_url

    def cache_slug(self, spec: ReleaseSpec) -> None:
        """With a store elsewhere, have `spec`'s slug in the host cache, and
        keep the cache to the few slugs each app may still run."""
        cache = self.local_slugs
        if cache is self.slugs:
            return
        path = cache.path(spec.slug_key)
        if path.is_file():
            os.utime(path)  # recently used: kept
            return
        # Downloaded straight into the cache under a hidden name, then renamed:
        # a reader sees no slug or the whole of it.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".get-", dir=path.parent)
        os.close(fd)
        try:
            self.slugs.get(spec.slug_key, Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        cache.keep_newest(f"{spec.app}/", SLUG_CACHE_PER_APP)

    def forget_app(self, app: str) -> None:
        """Drop the app's cached slugs (the store's copies are not touched)."""
        if self.local_slugs is not self.slugs:
            self.local_slugs.delete_prefix(f"{app}/")
