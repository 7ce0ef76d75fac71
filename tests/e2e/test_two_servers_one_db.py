"""Two real `shipway server` processes on one PostgreSQL (their own data
dirs, slugs shared in S3, the same master key and API-key secret): pushes
and config changes to one app through both at once never deploy at once,
releases are numbered without gap or duplicate, and nothing is lost (every
config change is in the final config; every push deployed or was told
"busy" in one clear line). The app lock of core/locks.py (a PostgreSQL
advisory lock here) is what makes it so: with a process-local lock the
deploys of the two servers overlap."""
from __future__ import annotations

import base64
import netrc
import os
import re
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tests.conftest import ApiClient, unique
from tests.e2e.helpers import User, fetch, new_app

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.postgres]

DEPLOY_LINE = re.compile(r"app (\S+): deploy of v(\d+) ran ([\d.]+) to ([\d.]+)")


def _deploys(log: str, app: str) -> list[tuple[float, float, int]]:
    return [(float(m[3]), float(m[4]), int(m[2])) for m in DEPLOY_LINE.finditer(log)
            if m[1] == app]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_servers_never_deploy_one_app_at_once(make_server, tmp_path: Path,
                                                    database_url: str, s3_endpoint: str) -> None:
    bucket = unique("slugs")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket=bucket)
    shared = {
        "SHIPWAY_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "SHIPWAY_API_KEY_SECRET": base64.b64encode(os.urandom(32)).decode(),
        "SHIPWAY_SLUG_STORE": "s3", "SHIPWAY_S3_BUCKET": bucket,
        "SHIPWAY_S3_ENDPOINT_URL": s3_endpoint, "SHIPWAY_S3_ACCESS_KEY_ID": "test",
        "SHIPWAY_S3_SECRET_ACCESS_KEY": "test",
    }
    a = make_server(env=shared, database_url=database_url)
    b = make_server(env=shared, database_url=database_url)

    user, app = new_app(a, tmp_path / "home", "procfile", "twin")
    user.push()  # v1, through A
    api_key = netrc.netrc(str(user.home / ".netrc")).authenticators("127.0.0.1")[2]
    user.git("remote", "add", "b", f"{b.url}/{app}.git")
    serve = user.src / "serve.py"
    serve.write_text(serve.read_text().replace("Hello from a Procfile", "Second"))
    user.commit("v2")

    pushes: dict[str, Any] = {}
    configs: dict[str, requests.Response] = {}

    def push(remote: str) -> None:
        pushes[remote] = user.git("push", remote, "main", check=False)

    def set_config(server: Any, name: str) -> None:
        configs[name] = ApiClient(server.url, api_key).request(
            "PATCH", f"/api/apps/{app}/config", json={name: "set"})

    work = [threading.Thread(target=push, args=("shipway",)),
            threading.Thread(target=push, args=("b",))]
    work += [threading.Thread(target=set_config, args=(server, f"{tag}{i}"))
             for i in range(3) for server, tag in ((a, "VIA_A_"), (b, "VIA_B_"))]
    for thread in work:
        thread.start()
    for thread in work:
        thread.join(900)
        assert not thread.is_alive()

    # Every push deployed, or was told "busy" in one clear line.
    deployed = 0
    for remote, result in pushes.items():
        said = result.stdout + result.stderr
        if result.returncode == 0:
            assert "Released v" in said, said
            deployed += 1
        else:
            assert f"another push to {app} is in progress" in said, said
    assert deployed >= 1
    # Every config change answered, and none is lost.
    for name, answer in configs.items():
        assert answer.status_code == 200, (name, answer.text)
    final = ApiClient(a.url, api_key).get(f"/api/apps/{app}/config").json()["config"]
    assert set(configs) <= set(final), final

    # Releases numbered 1..N, no gap, no duplicate, all succeeded.
    releases = ApiClient(b.url, api_key).get(f"/api/apps/{app}/releases").json()
    versions = sorted(r["version"] for r in releases)
    assert versions == list(range(1, 2 + deployed + len(configs))), releases
    assert {r["status"] for r in releases} == {"succeeded"}, releases

    # The deploys of both servers, laid side by side, never overlap.
    deploys = sorted(_deploys(a.log_path.read_text(errors="replace"), app) + _deploys(b.log_path.read_text(errors="replace"), app))
    assert sorted(v for _, _, v in deploys) == versions, deploys
    for (_, end, version), (start, _, nxt) in zip(deploys, deploys[1:]):
        assert start >= end, f"v{nxt} began deploying before v{version} had ended"
    assert {_deploys(a.log_path.read_text(errors="replace"), app) != [], _deploys(b.log_path.read_text(errors="replace"), app) != []} == {True}
    assert fetch(a, app).status_code == 200

    # Each server runs its own HAProxy router (the default) on its own ports.
    masters = [_haproxy_master(server.data_dir) for server in (a, b)]
    assert None not in masters and masters[0] != masters[1], masters
    for server in (a, b):
        unknown = requests.get(f"http://127.0.0.1:{server.router_port}/",
                               headers={"Host": "nothing-here.localhost"}, timeout=10)
        assert unknown.status_code == 404, unknown.text


def _haproxy_master(data_dir: Path) -> int | None:
    """The pid of the HAProxy master running on this data dir's router files."""
    conf = data_dir / "router" / "haproxy"
    try:
        pid = int((conf / "haproxy.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if cmdline.split(b"\0")[0].endswith(b"haproxy") and str(conf).encode() in cmdline else None
