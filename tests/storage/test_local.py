"""The local slug store and its signed URLs, through a real HTTP server."""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from core.settings import Settings
from storage.factory import make_slug_store
from storage.local import LocalSlugStore
from tests.conftest import ROOT, free_port


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def served(data_dir: Path) -> Iterator[LocalSlugStore]:
    """A store whose URLs point at a real Twisted server for the same data dir."""
    port = free_port()
    store = LocalSlugStore(Settings(data_dir=data_dir, http_port=port))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_slugs.py")),
                             str(data_dir), str(port)], cwd=str(ROOT),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
    try:
        yield store
    finally:
        proc.terminate()
        proc.wait(10)


def _slug(tmp_path: Path, size: int = 3 * 1024 * 1024 + 17) -> Path:
    path = tmp_path / "slug.tar.gz"
    path.write_bytes(os.urandom(size))
    return path


def test_put_get_delete_roundtrip(tmp_path: Path, data_dir: Path) -> None:
    store = make_slug_store(Settings(data_dir=data_dir))
    src = _slug(tmp_path)
    store.put("app1/abc.tar.gz", src)
    assert store.exists("app1/abc.tar.gz")
    out = tmp_path / "out"
    store.get("app1/abc.tar.gz", out)
    assert out.read_bytes() == src.read_bytes()
    store.put("app1/def.tar.gz", src)
    store.put("app10/x.tar.gz", src)
    store.delete("app1/abc.tar.gz")
    store.delete("app1/abc.tar.gz")  # missing is fine
    assert not store.exists("app1/abc.tar.gz")
    store.delete_prefix("app1/")
    assert not store.exists("app1/def.tar.gz")
    assert store.exists("app10/x.tar.gz")  # another app with a longer name survives
    with pytest.raises(KeyError):
        store.get("app1/abc.tar.gz", out)
    # no temp files left behind by put
    assert [p.name for p in (data_dir / "slugs").rglob(".put-*")] == []


def test_keep_newest_keeps_the_newest_and_drops_stale_partial_files(tmp_path: Path,
                                                                   data_dir: Path) -> None:
    store = make_slug_store(Settings(data_dir=data_dir))
    src = _slug(tmp_path, size=10)
    for n, name in enumerate(["a", "b", "c"]):
        store.put(f"app/{name}.tar.gz", src)
        os.utime(store.path(f"app/{name}.tar.gz"), (1000 + n, 1000 + n))
    folder = store.path("app")
    stale, fresh = folder / ".get-stale", folder / ".get-fresh"  # a crash's, one in progress
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (time.time() - 7200,) * 2)
    store.keep_newest("app/", 2)
    assert sorted(p.name for p in folder.iterdir()) == [".get-fresh", "b.tar.gz", "c.tar.gz"]


def test_secret_file_is_private_and_stable(data_dir: Path) -> None:
    a = LocalSlugStore(Settings(data_dir=data_dir))
    b = LocalSlugStore(Settings(data_dir=data_dir))
    mode = stat.S_IMODE((data_dir / "slug-url.secret").stat().st_mode)
    assert mode == 0o600
    assert a.signature("x/y.tar.gz", 100) == b.signature("x/y.tar.gz", 100)
    other = LocalSlugStore(Settings(data_dir=data_dir.parent / "other"))
    assert other.signature("x/y.tar.gz", 100) != a.signature("x/y.tar.gz", 100)


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs.tar.gz", "a/../../b", ".hidden", "a//b", ""])
def test_keys_cannot_escape(data_dir: Path, key: str) -> None:
    store = LocalSlugStore(Settings(data_dir=data_dir))
    with pytest.raises(ValueError):
        store.path(key)


def test_signed_url_downloads_over_http(served: LocalSlugStore, tmp_path: Path) -> None:
    src = _slug(tmp_path)
    served.put("myapp/slug1.tar.gz", src)
    url = served.url("myapp/slug1.tar.gz", expires_in=60)
    assert url.startswith(served.settings.api_url + "/slugs/myapp/slug1.tar.gz?")
    r = requests.get(url, timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/gzip"
    assert "content-encoding" not in r.headers
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()


def test_host_is_not_signed(served: LocalSlugStore, tmp_path: Path) -> None:
    """The runner rewrites the host for containers; the URL must still work."""
    served.put("myapp/s.tar.gz", _slug(tmp_path, 1000))
    url = served.url("myapp/s.tar.gz").replace("127.0.0.1", "localhost")
    assert requests.get(url, timeout=30).status_code == 200


def test_expired_tampered_and_other_slug_urls_are_refused(served: LocalSlugStore,
                                                          tmp_path: Path) -> None:
    served.put("myapp/a.tar.gz", _slug(tmp_path, 1000))
    served.put("other/b.tar.gz", _slug(tmp_path, 1000))
    good = served.url("myapp/a.tar.gz", expires_in=60)
    parts = urlsplit(good)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    base = f"{parts.scheme}://{parts.netloc}"

    def get(path: str, expires: str, signature: str) -> int:
        return requests.get(f"{base}{path}", params={"expires": expires, "signature": signature},
                            timeout=30).status_code

    assert get(parts.path, query["expires"], query["signature"]) == 200
    # expired (validly signed for a past time)
    past = int(time.time()) - 5
    assert get(parts.path, str(past), served.signature("myapp/a.tar.gz", past)) == 403
    # tampered signature, and a later expiry with the old signature
    bad = query["signature"][:-1] + ("0" if query["signature"][-1] != "0" else "1")
    assert get(parts.path, query["expires"], bad) == 403
    assert get(parts.path, str(int(query["expires"]) + 3600), query["signature"]) == 403
    # the signature of one slug does not open another
    assert get("/slugs/other/b.tar.gz", query["expires"], query["signature"]) == 403
    # missing parameters, and a path that tries to climb out
    assert requests.get(f"{base}{parts.path}", timeout=30).status_code == 403
    assert get("/slugs/../slug-url.secret", query["expires"], query["signature"]) in (403, 404)
