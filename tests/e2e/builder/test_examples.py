"""Each example app builds into a slug with the bundled buildpacks."""
from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import docker
import pytest

from tests.builder.helpers import bare_from, make_app, slug_members, write_tree
from tests.conftest import ROOT

EXPECT = {
    "elixir": ("Elixir", "_build/prod/rel/hello/bin/hello start", "_build/prod/rel/hello/bin/hello"),
    "python": ("Python", "python3 app.py", ".venv/bin/python"),
    "nodejs": ("Node.js", "npm start", "server.js"),
    "procfile": ("Procfile", "python3 serve.py", "serve.py"),
}


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(EXPECT))
def test_example_builds(example: str, tmp_path: Path, run_build) -> None:
    repo, sha = make_app(tmp_path, copy_from=ROOT / "examples" / example)
    result, out = run_build(repo, sha, app=f"ex-{example}")
    detected, web, must_have = EXPECT[example]
    assert f"-----> {detected} app detected" in out.lines
    assert result.buildpacks == [example]
    assert result.process_types["web"] == web
    members = slug_members(result.slug_path)
    assert must_have in members
    data = result.slug_path.read_bytes()
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    # the source is owned by the app user in the slug, with no /app prefix
    assert all(not name.startswith(("/", "app/")) for name in members)
    assert members[must_have].uid == 1000
    result.slug_path.unlink()


def _beam_has(slug: Path, member: str, text: bytes) -> bool:
    """Whether a compiled module in the slug carries `text` (a literal)."""
    return text in _member_bytes(slug, member)


@pytest.mark.slow
def test_elixir_cache_path_deps_and_one_line_change(tmp_path: Path, run_build,
                                                     stack_image: str) -> None:
    """A path dependency inside the repo is compiled into the release; an
    unchanged rebuild reuses the cached release without running mix; a
    one-line change in lib/ is compiled into the cached release (which then
    boots with it); a new module or a config change builds the whole
    release; mix's build and deps stay out of the slug."""
    work = tmp_path / "app-work"
    shutil.copytree(ROOT / "examples" / "elixir", work)
    mix = (work / "mix.exs").read_text()
    (work / "mix.exs").write_text(mix.replace("deps: [],", 'deps: [{:greeter, path: "greeter"}],'))
    write_tree(work, {
        "greeter/mix.exs": ('defmodule Greeter.MixProject do\n  use Mix.Project\n'
                            '  def project, do: [app: :greeter, version: "0.2.0", deps: []]\n'
                            'end\n'),
        "greeter/lib/greeter.ex": 'defmodule Greeter do\n  def hi, do: "hi from greeter"\nend\n',
    })
    repo, first = bare_from(work, tmp_path / "app.git")
    rel = "_build/prod/rel/hello"
    hello_beam = f"{rel}/lib/hello-0.1.0/ebin/Elixir.Hello.beam"

    cold, out = run_build(repo, first, app="cache", clean=True)
    assert "-----> Compiling and building the release (mix release)" in out.lines
    members = slug_members(cold.slug_path)
    assert f"{rel}/lib/greeter-0.2.0/ebin/Elixir.Greeter.beam" in members
    assert _beam_has(cold.slug_path, hello_beam, b"v1")
    assert not [n for n in members if n.startswith(("deps/", "_build/prod/lib/"))]

    again, out = run_build(repo, first, app="cache")
    assert "-----> Nothing changed since the last build: reusing the cached release" in out.lines
    assert not any("mix release" in line for line in out.lines)
    assert set(slug_members(again.slug_path)) == set(members)

    source = work / "lib" / "hello.ex"
    source.write_text(source.read_text().replace('@marker "v1"', '@marker "v2-one-line"'))
    _, changed = bare_from(work, tmp_path / "app.git")
    warm, out = run_build(repo, changed, app="cache")
    assert ("-----> Only code under lib/ changed: compiling it into the cached release "
            "(mix compile)") in out.lines
    assert not any("mix release" in line for line in out.lines)
    assert _beam_has(warm.slug_path, hello_beam, b"v2-one-line")
    assert set(slug_members(warm.slug_path)) == set(members)
    assert _run_release(stack_image, warm.slug_path, "IO.puts(Hello.marker())") == "v2-one-line"
    # Only the changed module was written again: the others are as mix
    # release stripped them.
    assert _member_bytes(warm.slug_path, f"{rel}/lib/hello-0.1.0/ebin/Elixir.Hello.Handler.beam") \
        == _member_bytes(cold.slug_path, f"{rel}/lib/hello-0.1.0/ebin/Elixir.Hello.Handler.beam")
    assert _member_bytes(warm.slug_path, hello_beam) != _member_bytes(cold.slug_path, hello_beam)

    # Unchanged again: the updated release is the cached one.
    same, out = run_build(repo, changed, app="cache")
    assert "-----> Nothing changed since the last build: reusing the cached release" in out.lines
    assert _member_bytes(same.slug_path, hello_beam) == _member_bytes(warm.slug_path, hello_beam)

    # A new module changes the application file (its module list, which the
    # boot script loads): the whole release is built.
    write_tree(work, {"lib/extra.ex": 'defmodule Hello.Extra do\n  def x, do: "extra"\nend\n'})
    _, added = bare_from(work, tmp_path / "app.git")
    grown, out = run_build(repo, added, app="cache")
    assert "       the set of modules changed: building the whole release" in out.lines
    assert "-----> Compiling and building the release (mix release)" in out.lines
    assert f"{rel}/lib/hello-0.1.0/ebin/Elixir.Hello.Extra.beam" in slug_members(grown.slug_path)
    assert _run_release(stack_image, grown.slug_path, "IO.puts(Hello.Extra.x())") == "extra"

    # Anything outside lib/ (here config) is more than code: the whole release.
    write_tree(work, {"config/config.exs": "import Config\nconfig :hello, greeting: \"hi\"\n"})
    _, configured = bare_from(work, tmp_path / "app.git")
    full, out = run_build(repo, configured, app="cache")
    assert "-----> Compiling and building the release (mix release)" in out.lines
    assert not any("Only code under lib/" in line for line in out.lines)
    for result in (cold, again, warm, same, grown, full):
        result.slug_path.unlink()


def _member_bytes(slug: Path, member: str) -> bytes:
    with tarfile.open(slug) as tar:
        return tar.extractfile(member).read()  # type: ignore[union-attr]


def _run_release(image: str, slug: Path, expression: str) -> str:
    """Unpack the slug in a stack container and `eval` in its release: what
    the code in it really does (the release boots, the modules load)."""
    client = docker.from_env()
    container = client.containers.create(
        image, user="1000:1000", labels={"shipway.test": "release-eval"},
        command=["bash", "-c", 'cd /tmp && tar -xzf /tmp/slug.tgz && '
                 '_build/prod/rel/hello/bin/hello eval "$1"', "eval", expression])
    try:
        info = tarfile.TarInfo("tmp/slug.tgz")
        data = slug.read_bytes()
        info.size, info.uid, info.gid, info.mode = len(data), 1000, 1000, 0o644
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.addfile(info, io.BytesIO(data))
        container.put_archive("/", archive.getvalue())
        container.start()
        assert container.wait(timeout=120)["StatusCode"] == 0, container.logs().decode()
        return container.logs(stdout=True, stderr=False).decode().strip()
    finally:
        container.remove(force=True, v=True)


@pytest.mark.slow
def test_elixir_cached_release_changed_through_its_links_is_rebuilt(tmp_path: Path,
                                                                     run_build) -> None:
    """The cached release and the slug's share files (hard links): a later
    buildpack that writes into one in place changes the cached copy too, so
    the next build must see that and run mix, not reuse a tampered release."""
    env_sh = "_build/prod/rel/hello/releases/0.1.0/env.sh"
    repo, sha = make_app(tmp_path, copy_from=ROOT / "examples" / "elixir", files={
        ".buildpacks": "elixir\n./tamper\n",
        "tamper/bin/detect": "#!/bin/sh\necho Tamper\n",
        "tamper/bin/compile": f'#!/bin/sh\necho "# tampered" >> "$1/{env_sh}"\n',
    })

    def tampered(slug: Path) -> int:
        with tarfile.open(slug) as tar:
            return tar.extractfile(env_sh).read().count(b"# tampered")  # type: ignore[union-attr]

    first, out = run_build(repo, sha, app="tamper", clean=True)
    assert "-----> Compiling and building the release (mix release)" in out.lines
    assert tampered(first.slug_path) == 1
    second, out = run_build(repo, sha, app="tamper")
    assert not any("reusing the cached release" in line for line in out.lines)
    assert "-----> Compiling and building the release (mix release)" in out.lines
    assert tampered(second.slug_path) == 1


@pytest.mark.slow
def test_elixir_toolchain_versions_are_read_again_when_dpkg_changes(tmp_path: Path,
                                                                    run_build) -> None:
    """The Erlang/Elixir versions (part of the fingerprint) are kept in the
    cache with the modification time of dpkg's database: they are trusted
    while that is the same, and asked of dpkg again when it is not (another
    stack image). A buildpack before elixir fakes the record to show which."""
    pre = ('#!/bin/bash\nrecord="$2/elixir/toolchain"\nmode=$(cat "$3/MODE")\n'
           '[ -f "$record" ] || exit 0\necho "elixir 9.9-fake" > "$record"\n'
           'if [ "$mode" = same ]; then touch -r /var/lib/dpkg/status "$record"; '
           'else touch -d @1000 "$record"; fi\n')
    repo, sha = make_app(tmp_path, copy_from=ROOT / "examples" / "elixir", files={
        ".buildpacks": "./pre\nelixir\n", "pre/bin/detect": "#!/bin/sh\necho Pre\n",
        "pre/bin/compile": pre})

    def versions(mode: str, clean: bool = False) -> str:
        result, out = run_build(repo, sha, app="toolchain", env={"MODE": mode}, clean=clean)
        result.slug_path.unlink()
        [line] = [line for line in out.lines if line.startswith("       elixir ")]
        return line

    real = versions("same", clean=True)
    assert "elixir 1." in real and "erlang-base" in real
    assert versions("same") == "       elixir 9.9-fake MIX_ENV=prod"
    assert versions("other") == real
