"""Slugs in S3 (or any S3-compatible service) via boto3, with presigned GET
URLs, for Shipway processes that share no disk."""
from __future__ import annotations

from pathlib import Path

from zope.interface import implementer

from core.settings import Settings
from storage.interface import ISlugStore, SlugStoreFull
from storage.local import check_key


@implementer(ISlugStore)
class S3SlugStore:
    """Keys live under `settings.s3_prefix` in `settings.s3_bucket`."""

    def __init__(self, settings: Settings, client: object | None = None) -> None:
        import boto3

        if not settings.s3_bucket:
            raise ValueError("slug_store is s3 but s3_bucket is not set")
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix or ""
        self.client = client or boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
        )

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, source: Path) -> None:
        # A single S3 PUT (or a completed multipart upload) is atomic: a
        # failed one stores nothing.
        try:
            self.client.upload_file(str(source), self.bucket, self._name(key))
        except Exception as e:  # noqa: BLE001 (re-raised unless the service is full)
            # MinIO says XMinioStorageFull; HTTP 507 is Insufficient Storage.
            if any(mark in str(e) for mark in ("XMinioStorageFull", "InsufficientStorage",
                                               "(507)")):
                raise SlugStoreFull() from e
            raise

    def get(self, key: str, dest: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._name(key), str(dest))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise KeyError(key) from None
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def url(self, key: str, expires_in: int = 600) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._name(key)},
            ExpiresIn=int(expires_in))
