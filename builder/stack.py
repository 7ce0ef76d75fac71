"""The stack image: a Debian bookworm root filesystem made with debootstrap
from the mirror the host's apt already uses, imported as `shipway/stack:<v>`.

No registry is reachable, so the image is built here from packages. Its tag is
a short hash of the recipe below, then one of the CA certificates the host
trusts beyond Debian's (`shipway/stack:<recipe>-ca<set>`, see stack_ca): a
changed recipe builds a new base, a changed CA set only a new trust layer
over it, and nothing changed builds nothing. Build and run containers both use it:
it carries Erlang/OTP 25 + Elixir 1.14, Python 3, Node.js, an SSH server, git
and build tools, a non-root user `app` (uid/gid 1000, home `/app`) and `tini`
(`/usr/bin/tini`) as a minimal init, and the workspace layout below.

`/app` and `/cache` are symlinks into `/workspace`, where a build container
mounts the app's build volume and a run container an anonymous volume. A
build's source and its cache are then on one file system, so a buildpack can
move or hard-link between them instead of copying (on this kind of host,
writing files is what a warm build spends its time on), and a path a build
leaks (a process's cwd is the resolved `/workspace/app`) still exists when
the slug runs.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from builder import stack_ca
from core.output import Output
from core.settings import Settings


REPOSITORY = "shipway/stack"
SUITE = "bookworm"
APP_USER = "app"
APP_UID = 1000
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PACKAGES = [
    "ca-certificates", "curl", "git", "openssh-server", "tini", "procps",
    "netbase", "less", "build-essential", "pkg-config",
    "pigz",  # slugs are gzipped on every push: on all the build's cores
    "erlang-nox", "erlang-dev", "elixir",
    "python3", "python3-venv", "python3-pip", "python3-dev",
    "nodejs", "npm",
]

# Runs inside the chroot after the packages are installed. `/workspace` and
# its `app` and `cache` are owned by `app`, so that a new, empty volume
# mounted there takes that content and ownership (Docker copies it up) and
# builds need no root. Host keys made by
# openssh-server's postinst are removed: every container must make its own
# (`ssh-keygen -A`), or all apps would share one host key.
FINISH_SCRIPT = f"""set -e
groupadd -g {APP_UID} {APP_USER}
useradd -u {APP_UID} -g {APP_UID} -d /app -M -s /bin/bash {APP_USER}
mkdir -p /workspace/app /workspace/cache /run/sshd
chown {APP_UID}:{APP_UID} /workspace /workspace/app /workspace/cache
ln -s /workspace/app /app
ln -s /workspace/cache /cache
rm -f /etc/ssh/ssh_host_*
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old \\
       /var/log/apt /var/log/dpkg.log /usr/share/doc/* /usr/share/man/* /tmp/* \\
       /usr/sbin/policy-rc.d
"""

IMAGE_ENV = {"PATH": PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def recipe_version() -> str:
    """A short hash of everything that decides the image's content."""
    recipe = {"suite": SUITE, "packages": PACKAGES, "finish": FINISH_SCRIPT,
              "env": IMAGE_ENV, "user": [APP_USER, APP_UID], "variant": "minbase"}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def base_image_tag() -> str:
    """The debootstrapped image, before the host's CA certificates."""
    return f"{REPOSITORY}:{recipe_version()}"


def stack_image_tag(settings: Settings) -> str:
    """The image builds and runs use: the configured one, else the recipe's
    base with the trust layer of the CA set the host has now (stack_ca)."""
    if settings.stack_image:
        return settings.stack_image
    return _layered_tag(stack_ca.ca_set(settings.extra_ca))


def _layered_tag(certificates: list[bytes]) -> str:
    return f"{base_image_tag()}-ca{stack_ca.trust_version(certificates)}"


# --- the host's Debian mirror ---------------------------------------------------

def _one_line_entries(text: str) -> Iterator[tuple[str, list[str]]]:
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        parts = line.split()
        if len(parts) < 3 or parts[0] != "deb":
            continue
        parts = parts[1:]
        if parts[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while parts and not parts[0].endswith("]"):
                parts.pop(0)
            parts = parts[1:]
        if len(parts) >= 2:
            yield parts[0], [parts[1]]


def _deb822_entries(text: str) -> Iterator[tuple[str, list[str]]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split()


def apt_sources(root: Path = Path("/etc/apt")) -> list[tuple[str, list[str]]]:
    """Every enabled `deb` entry of the host: (URI, suites), in apt's order."""
    files: list[Path] = []
    if (root / "sources.list").is_file():
        files.append(root / "sources.list")
    parts = root / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    entries: list[tuple[str, list[str]]] = []
    for path in files:
        text = path.read_text(errors="replace")
        parse = _deb822_entries if path.suffix == ".sources" else _one_line_entries
        entries.extend(parse(text))
    return entries


def debian_mirror(root: Path = Path("/etc/apt")) -> tuple[str, list[tuple[str, str]]]:
    """The mirror that serves `bookworm` itself, plus the Debian entries
    (URI, suite) for bookworm, its updates and security, for the image's apt."""
    main = None
    extra: list[tuple[str, str]] = []
    for uri, suites in apt_sources(root):
        for suite in suites:
            if suite == SUITE and main is None:
                main = uri
            if suite in (SUITE, f"{SUITE}-updates", f"{SUITE}-security", f"{SUITE}/updates"):
                extra.append((uri, suite))
    if main is None:
        raise RuntimeError(f"no apt source for Debian {SUITE} in {root}; "
                           "configure one or set stack_image")
    return main, extra


# --- building -------------------------------------------------------------------

def _run(cmd: list[str], output: Output, prefix: str = "", **kw: object) -> None:
    """Run a command, streaming its lines as progress; raise on failure."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", **kw)  # type: ignore[call-overload]
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            output(prefix + line)
            tail = (tail + [line])[-20:]
    if proc.wait() != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed ({proc.returncode}):\n"
                           + "\n".join(tail))


def _image_exists(tag: str) -> bool:
    import docker
    import docker.errors

    client = docker.from_env()
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def _mounted(rootfs: Path) -> Iterator[None]:
    """/proc in the chroot for package scripts; always undone. Nothing of the
    host is bind-mounted (debootstrap makes /dev's nodes itself), so removing
    the tree can never reach host files."""
    mounts = [("proc", "proc", ["-t", "proc"])]
    done: list[Path] = []
    try:
        for src, target, opts in mounts:
            path = rootfs / target
            path.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", *opts, src, str(path)], check=True)
            done.append(path)
        yield
    finally:
        for path in reversed(done):
            subprocess.run(["umount", "-l", str(path)], check=False)


def _build_rootfs(rootfs: Path, output: Output) -> None:
    mirror, entries = debian_mirror()
    output(f"-----> debootstrap {SUITE} (minbase) from {mirror}")
    _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], output, "       ")
    (rootfs / "etc/apt/sources.list").write_text(
        "".join(f"deb {uri} {suite} main\n" for uri, suite in entries))
    # No daemons start inside the chroot while packages install.
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    env = {"PATH": PATH, "DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}
    with _mounted(rootfs):
        output("-----> apt-get update")
        _run(["chroot", str(rootfs), "apt-get", "update"], output, "       ", env=env)
        output(f"-----> installing {len(PACKAGES)} packages: {' '.join(PACKAGES)}")
        _run(["chroot", str(rootfs), "apt-get", "install", "-y", "-q",
              "--no-install-recommends", *PACKAGES], output, "       ", env=env)
        output("-----> user app (uid 1000), /app, removing apt lists and caches")
        _run(["chroot", str(rootfs), "/bin/bash", "-c", FINISH_SCRIPT], output, "       ",
             env=env)


def _import(rootfs: Path, tag: str, output: Output) -> None:
    output(f"-----> docker import as {tag}")
    changes: list[str] = []
    for key, value in IMAGE_ENV.items():
        changes += ["--change", f"ENV {key}={value}"]
    changes += ["--change", f"LABEL shipway.stack={recipe_version()}",
                "--change", "WORKDIR /app", "--change", 'CMD ["/bin/bash"]']
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                           stdout=subprocess.PIPE)
    try:
        _run(["docker", "import", *changes, "-", tag], output, "       ", stdin=tar.stdout)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
    if tar.returncode != 0:
        raise RuntimeError("tar of the root filesystem failed")


def ensure_stack_image(settings: Settings, output: Output) -> str:
    """Return the stack image's tag, building it first if it is missing.

    A configured `settings.stack_image` is used as is (never built). The
    base (debootstrap, minutes) is built only when the recipe changed; the
    trust layer over it (seconds) whenever the host's CA set did. Builds
    are serialised by a lock per image, so concurrent callers (tests, the
    server, `shipway stack:build`) build each once.
    """
    if settings.stack_image:
        return settings.stack_image
    certificates = stack_ca.ca_set(settings.extra_ca)
    tag = _layered_tag(certificates)
    if _image_exists(tag):
        return tag
    with _image_lock(tag, output):
        if _image_exists(tag):
            return tag
        base = _ensure_base_image(settings, output)
        stack_ca.build_trust_layer(base, tag, certificates, {
            "shipway.stack": recipe_version(),
            "shipway.trust": stack_ca.trust_version(certificates)}, output)
    output(f"-----> stack image {tag} ready")
    return tag


@contextlib.contextmanager
def _image_lock(tag: str, output: Output) -> Iterator[None]:
    name = tag.rpartition(":")[2]
    lock_path = Path(tempfile.gettempdir()) / f"shipway-stack-{name}.lock"
    with open(lock_path, "w") as lock:
        output(f"-----> waiting for the stack image lock ({lock_path})")
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _ensure_base_image(settings: Settings, output: Output) -> str:
    tag = base_image_tag()
    if _image_exists(tag):
        return tag
    with _image_lock(tag, output):
        if _image_exists(tag):
            return tag
        if os.geteuid() != 0:
            raise RuntimeError("building the stack image needs root (debootstrap, "
                               "chroot); run `shipway stack:build` as root")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="stack-build-", dir=settings.data_dir))
        try:
            rootfs = work / "rootfs"
            _build_rootfs(rootfs, output)
            _import(rootfs, tag, output)
        finally:
            output("-----> removing the temporary root filesystem")
            _remove_tree(work)
    return tag


def _remove_tree(path: Path) -> None:
    """Remove a build root, first undoing any mount a crash left inside it."""
    mount = path / "rootfs" / "proc"
    if os.path.ismount(mount):
        subprocess.run(["umount", "-l", str(mount)], check=False)
    if os.path.ismount(mount):
        raise RuntimeError(f"{mount} is still mounted; not removing {path}")
    shutil.rmtree(path, ignore_errors=True)
