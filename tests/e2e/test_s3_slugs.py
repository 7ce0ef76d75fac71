"""Slugs kept in S3 (a real S3-compatible server on 127.0.0.1, which no run
container can reach) still deploy with the Docker runner: the runner caches
the slug on the host and containers download it from the gateway, signed by
Shipway. Rollback and destroy keep the cache consistent."""
from __future__ import annotations

import boto3
import pytest

from tests.conftest import unique
from tests.e2e.helpers import fetch, new_app

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_push_with_slugs_in_s3(make_server, tmp_path, s3_endpoint: str) -> None:
    bucket = unique("slugs")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket=bucket)
    server = make_server(env={
        "SHIPWAY_SLUG_STORE": "s3", "SHIPWAY_S3_BUCKET": bucket,
        "SHIPWAY_S3_ENDPOINT_URL": s3_endpoint, "SHIPWAY_S3_ACCESS_KEY_ID": "test",
        "SHIPWAY_S3_SECRET_ACCESS_KEY": "test"})
    user, app = new_app(server, tmp_path / "home", "procfile", "s3")
    user.push()
    assert "(release v1)" in fetch(server, app).text

    stored = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(stored) == 1 and stored[0].startswith(f"slugs/{app}/")
    cache = server.data_dir / "slug-cache" / app
    assert [p.name for p in cache.iterdir()] == [stored[0].rsplit("/", 1)[1]]
    assert not (server.data_dir / "slugs").exists() or not any((server.data_dir / "slugs").iterdir())

    # A second release, then a rollback to the first: both from the cache.
    serve = user.src / "serve.py"
    serve.write_text(serve.read_text().replace("Hello from a Procfile", "Second"))
    user.commit("v2")
    user.push()
    assert fetch(server, app).text.startswith("Second")
    user.shipway("-a", app, "releases:rollback", "1")
    assert fetch(server, app).text.startswith("Hello from a Procfile")
    assert len(list(cache.iterdir())) == 2

    user.shipway("-a", app, "apps:destroy", "--confirm", app)
    assert not cache.exists()
    assert not s3.list_objects_v2(Bucket=bucket).get("Contents")
