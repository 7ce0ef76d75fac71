"""The S3 slug store against a real S3-compatible server (moto in server
mode). moto does not check presigned signatures; the local store's tests
cover signature checking."""
from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
import requests

from core.settings import Settings
from storage.factory import make_slug_store
from storage.s3 import S3SlugStore
from tests.conftest import unique


@pytest.fixture
def store(s3_endpoint: str) -> S3SlugStore:
    bucket = unique("bucket")
    settings = Settings(slug_store="s3", s3_bucket=bucket, s3_prefix="slugs/",
                        s3_endpoint_url=s3_endpoint, s3_access_key_id="test",
                        s3_secret_access_key="test")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket=bucket)
    made = make_slug_store(settings)
    assert isinstance(made, S3SlugStore)
    return made


def test_s3_round_trip(store: S3SlugStore, tmp_path: Path) -> None:
    src = tmp_path / "slug.tar.gz"
    src.write_bytes(os.urandom(200_000))
    store.put("app1/one.tar.gz", src)
    store.put("app1/two.tar.gz", src)
    store.put("app2/three.tar.gz", src)
    assert store.exists("app1/one.tar.gz")
    # stored under the prefix
    names = [o["Key"] for o in store.client.list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert "slugs/app1/one.tar.gz" in names
    out = tmp_path / "out"
    store.get("app1/one.tar.gz", out)
    assert out.read_bytes() == src.read_bytes()
    # the presigned URL downloads without credentials
    r = requests.get(store.url("app1/one.tar.gz", expires_in=60), timeout=30)
    assert r.status_code == 200 and r.content == src.read_bytes()
    store.delete("app1/one.tar.gz")
    assert not store.exists("app1/one.tar.gz")
    with pytest.raises(KeyError):
        store.get("app1/one.tar.gz", out)
    store.delete_prefix("app1/")
    assert not store.exists("app1/two.tar.gz")
    assert store.exists("app2/three.tar.gz")
