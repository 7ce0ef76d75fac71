"""Picks the slug store backend named by `settings.slug_store`."""
from __future__ import annotations

from core.settings import Settings
from storage.interface import ISlugStore


def make_slug_store(settings: Settings) -> ISlugStore:
    if settings.slug_store == "local":
        from storage.local import LocalSlugStore

        return LocalSlugStore(settings)
    if settings.slug_store == "s3":
        from storage.s3 import S3SlugStore

        return S3SlugStore(settings)
    raise ValueError(f"unknown slug_store {settings.slug_store!r} (local or s3)")
