"""Buildpack order, third-party buildpacks by git URL, ENV_DIR, .slugignore,
and source with submodules."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import BuildFailed
from tests.builder.helpers import bare_from, commit_dir, git, make_app, slug_file, slug_members, write_tree

ROOT = Path(__file__).resolve().parent


def _pack(name: str) -> dict[str, str]:
    """A tiny buildpack that lives inside the app (a path in .buildpacks)."""
    return {
        f"bp/{name}/bin/detect": "#!/bin/sh\necho %s\n" % name,
        f"bp/{name}/bin/compile": ("#!/bin/sh\nset -e\necho \"-----> %s compiling\"\n"
                                   "echo %s >> \"$1/order.txt\"\n" % (name, name)),
        f"bp/{name}/bin/release": ("#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n"
                                   "  web: from-%s\\n  %s: only-%s\\n'\n" % (name, name, name)),
    }


def test_two_buildpacks_run_in_order(tmp_path: Path, run_build) -> None:
    files = {".buildpacks": "# comment\n./bp/first\n\nbp/second\n", **_pack("first"),
             **_pack("second"), "Procfile": "worker: run-worker\n"}
    repo, sha = make_app(tmp_path, files)
    result, out = run_build(repo, sha)
    assert result.buildpacks == ["./bp/first", "bp/second"]
    assert slug_file(result.slug_path, "order.txt") == "first\nsecond\n"
    text = out.text
    assert text.index("first compiling") < text.index("second compiling")
    # later buildpacks' defaults win, the app's Procfile wins over both
    assert result.process_types == {"web": "from-second", "first": "only-first",
                                    "second": "only-second", "worker": "run-worker"}


def test_third_party_buildpack_by_git_url_runs_unchanged(tmp_path: Path, daemon, run_build,
                                                         make_builder) -> None:
    base, url = daemon
    # the daemon is on loopback: only fetched where the operator allows it
    allowed = make_builder(fetch_allow=url.removeprefix("git://"))
    pack = base / "testpack-work"
    write_tree(pack, {})
    import shutil
    shutil.copytree(ROOT / "testpack", pack, dirs_exist_ok=True)
    commit_dir(pack)
    git("tag", "v1", cwd=pack)
    git("clone", "-q", "--bare", str(pack), str(base / "testpack.git"))
    files = {".buildpacks": f"{url}/testpack.git#v1\nprocfile\n", "testpack.txt": "yes",
             "Procfile": "web: ./mine\n"}
    repo, sha = make_app(tmp_path, files)
    result, out = run_build(repo, sha, env={"GREETING": "hola", "SECRET_THING": "s3cr3t"},
                            using=allowed)
    assert "-----> Testpack app detected" in out.lines
    assert "-----> testpack compiling" in out.lines
    assert result.buildpacks == ["testpack", "procfile"]
    assert slug_file(result.slug_path, "testpack-out/args") == "/app /cache /shipway/env\n"
    assert slug_file(result.slug_path, "testpack-out/greeting") == "hola"
    assert result.process_types == {"web": "./mine", "worker": "./testpack-worker"}
    # ENV_DIR never becomes part of the slug
    assert not any("s3cr3t" in name for name in slug_members(result.slug_path))


def test_unknown_bundled_name_and_host_paths_are_refused(tmp_path: Path, run_build) -> None:
    for entry, words in (("nosuchpack", "no bundled buildpack"), ("/etc", "must be"),
                         ("file:///etc", "only https")):
        repo, sha = make_app(tmp_path, {".buildpacks": entry + "\n"}, name=f"a{len(entry)}")
        with pytest.raises(BuildFailed) as e:
            run_build(repo, sha)
        assert words in str(e.value)


def test_no_buildpack_detected(tmp_path: Path, run_build) -> None:
    repo, sha = make_app(tmp_path, {"README": "nothing to build"})
    with pytest.raises(BuildFailed) as e:
        run_build(repo, sha)
    assert e.value.reason == "no buildpack detected"


def test_slugignore(tmp_path: Path, run_build) -> None:
    # "*" crosses directories only in a pattern with a slash (from the root);
    # one without matches a single name at any depth.
    files = {"Procfile": "web: x\n",
             ".slugignore": "*.psd\n/docs\nspec/fixtures/\ntmp/*/cache\nlog*txt\n# note\n/\n",
             "a.psd": "x", "deep/b.psd": "x", "docs/x.md": "x", "lib/docs/keep.md": "x",
             "spec/fixtures/big": "x", "spec/keep.rb": "x", "keep.txt": "x",
             "tmp/a/b/cache/x": "x", "tmp/a/keep": "x", "logs/a.txt": "x", "log-1.txt": "x",
             "x/log.txt": "x"}
    repo, sha = make_app(tmp_path, files)
    result, _ = run_build(repo, sha)
    names = set(slug_members(result.slug_path))
    assert {"keep.txt", "lib/docs/keep.md", "spec/keep.rb", "Procfile", "tmp/a/keep",
            "logs/a.txt"} <= names
    assert not names & {"a.psd", "deep/b.psd", "docs/x.md", "docs", "spec/fixtures/big",
                        "tmp/a/b/cache", "tmp/a/b/cache/x", "log-1.txt", "x/log.txt"}


def test_submodules_are_fetched(tmp_path: Path, daemon, run_build, make_builder) -> None:
    base, url = daemon
    allowed = make_builder(fetch_allow=url.removeprefix("git://"))
    # a submodule that itself has a submodule
    inner = base / "inner-work"
    write_tree(inner, {"inner.txt": "inner file\n"})
    commit_dir(inner)
    git("clone", "-q", "--bare", str(inner), str(base / "inner.git"))
    lib = base / "lib-work"
    write_tree(lib, {"lib.txt": "lib file\n", "run.sh": "#!/bin/sh\necho hi\n"})
    commit_dir(lib)
    git("submodule", "add", "-q", f"{url}/inner.git", "nested", cwd=lib)
    commit_dir(lib, "add nested")
    git("clone", "-q", "--bare", str(lib), str(base / "lib.git"))
    work = tmp_path / "app-work"
    write_tree(work, {"Procfile": "web: x\n"})
    commit_dir(work)
    git("submodule", "add", "-q", f"{url}/lib.git", "vendor/lib", cwd=work)
    repo, sha = bare_from(work, tmp_path / "app.git")
    result, out = run_build(repo, sha, using=allowed)
    assert slug_file(result.slug_path, "vendor/lib/lib.txt") == "lib file\n"
    assert slug_file(result.slug_path, "vendor/lib/nested/inner.txt") == "inner file\n"
    assert slug_members(result.slug_path)["vendor/lib/run.sh"].mode & 0o111
    assert any("Fetching submodule vendor/lib" in line for line in out.lines)


@pytest.mark.parametrize("bad_url,why", [
    ("git://127.0.0.1:1/missing.git", "could not be fetched"),
    ("/etc", "only https"),
])
def test_unfetchable_submodule_fails_naming_it(tmp_path: Path, run_build, bad_url: str,
                                               why: str) -> None:
    work = tmp_path / "app-work"
    write_tree(work, {"Procfile": "web: x\n"})
    commit_dir(work)
    # a gitlink plus .gitmodules, as `git submodule add` would write
    sub = tmp_path / "sub"
    write_tree(sub, {"f": "x"})
    sub_sha = commit_dir(sub)
    git("update-index", "--add", "--cacheinfo", f"160000,{sub_sha},ext/thing", cwd=work)
    write_tree(work, {".gitmodules": f'[submodule "thing"]\n\tpath = ext/thing\n\turl = {bad_url}\n'})
    git("add", ".gitmodules", cwd=work)
    git("commit", "-q", "-m", "add a submodule", cwd=work)  # not `add -A`: no checkout there
    repo = tmp_path / "app.git"
    git("init", "-q", "--bare", str(repo))
    git("push", "-q", str(repo), "HEAD:refs/heads/main", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work)
    with pytest.raises(BuildFailed) as e:
        run_build(repo, sha)
    assert e.value.reason == "submodule thing failed"
    assert "thing" in str(e.value) and bad_url in str(e.value) and why in str(e.value)


def test_output_without_a_final_newline_and_a_failing_release(tmp_path: Path, run_build) -> None:
    """The builder's events share the stream with the buildpacks' output: a
    compile whose last line has no newline is shown whole and does not hide
    the next event; a failing bin/release fails the build with its words."""
    files = {".buildpacks": "./p\n", "p/bin/detect": "#!/bin/sh\necho Partial\n",
             "p/bin/compile": "#!/bin/sh\nprintf 'compiled, no newline'\n",
             "Procfile": "web: serve\n"}
    repo, sha = make_app(tmp_path, files, name="partial")
    result, out = run_build(repo, sha)
    assert "compiled, no newline" in out.lines
    assert out.lines.index("-----> Partial app detected") < out.lines.index("compiled, no newline")
    assert result.process_types == {"web": "serve"} and result.buildpacks == ["./p"]

    files["p/bin/release"] = "#!/bin/sh\necho 'release broke: 7731' >&2\nexit 4\n"
    repo, sha = make_app(tmp_path, files, name="badrelease")
    with pytest.raises(BuildFailed) as failed:
        run_build(repo, sha, app="badrelease")
    assert "release failed (exit 4): release broke: 7731" in str(failed.value)


def test_buildpack_output_streams_and_cannot_reach_the_slug(tmp_path: Path, run_build) -> None:
    """The driver writes the slug to the exec's stdout; a buildpack's stdout
    and stderr both go to the pusher, and the slug's descriptor is closed
    for it, so nothing it prints can end up in the slug."""
    compile_script = ("#!/bin/bash\necho 'to stdout 5521'\necho 'to stderr 5522' >&2\n"
                      "if { echo junk >&3; } 2>/dev/null; then echo 'fd 3 open'; "
                      "else echo 'fd 3 closed'; fi\necho made > \"$1/made.txt\"\n")
    files = {".buildpacks": "./bp/noisy\n", "bp/noisy/bin/detect": "#!/bin/sh\necho Noisy\n",
             "bp/noisy/bin/compile": compile_script, "Procfile": "web: serve\n"}
    repo, sha = make_app(tmp_path, files)
    result, out = run_build(repo, sha)
    assert {"to stdout 5521", "to stderr 5522", "fd 3 closed"} <= set(out.lines)
    assert slug_file(result.slug_path, "made.txt") == "made\n"
    assert out.lines.index("-----> Compressing the slug") > out.lines.index("fd 3 closed")


def test_release_printing_invalid_yaml_fails_with_that_reason(tmp_path: Path, run_build) -> None:
    """bin/release exits 0 but its YAML does not parse: the driver does not
    know and packs the slug; the build still fails, saying why."""
    files = {".buildpacks": "./p\n", "p/bin/detect": "#!/bin/sh\necho P\n",
             "p/bin/compile": "#!/bin/sh\ntrue\n",
             "p/bin/release": "#!/bin/sh\necho 'default_process_types: [web: unclosed'\n"}
    repo, sha = make_app(tmp_path, files)
    with pytest.raises(BuildFailed, match="bin/release printed invalid YAML"):
        run_build(repo, sha)
