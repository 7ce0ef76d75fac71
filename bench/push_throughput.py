#!/usr/bin/env python3
"""Push throughput: Shipway's SSH git server against C git's receive-pack
behind OpenSSH, both on loopback, in the same run.

The repository: 50 dirs x 100 files of 3,000 words drawn from a 5,000-word
vocabulary (seed 1), plus 5 x 4 MB random files (about a 77 MB pack). Each
round pushes it to a fresh, empty repository on each server (Shipway: a new
app, pushed to a non-deploy branch so only the git path is timed). Prints
the wall time of `git push`, the ratio, and the peak memory (PSS) of each
server's whole process tree (sampled every 20 ms) against the pack size.

    .venv/bin/python bench/push_throughput.py [--rounds 3] [--keep]

Goal (issue 3): ratio <= 1.3, Shipway's peak memory <= 2x the pack size.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import ShipwayServer, _stop_nginx, free_port  # noqa: E402


def make_source(path: Path) -> None:
    rng = random.Random(1)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10)))
             for _ in range(5000)]
    for d in range(50):
        folder = path / f"dir{d:02d}"
        folder.mkdir(parents=True)
        for f in range(100):
            words = rng.choices(vocab, k=3000)
            (folder / f"file{f:03d}.txt").write_text(
                "\n".join(" ".join(words[i:i + 12]) for i in range(0, 3000, 12)) + "\n")
    for i in range(5):
        (path / f"blob{i}.bin").write_bytes(rng.randbytes(4 * 1024 * 1024))
    env = git_env(path)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "commit", "-q", "-m", "bench"], check=True, env=env)


def git_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"})
    env.update(extra)
    return env


def pack_size(src: Path) -> int:
    out = subprocess.run(["git", "-C", str(src), "pack-objects", "--stdout", "--revs", "-q"],
                         input=b"HEAD\n", capture_output=True, check=True).stdout
    return len(out)


# --- memory of a process tree -------------------------------------------------

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _pss(pid: int) -> int:
    """Proportional set size: shared pages split between their users, so a
    child forked from the server (before its exec) is not counted twice."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> int:
    """Memory of a process and all its descendants (sum of PSS)."""
    kids = _children()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, []))
        total += _pss(p)
    return total


class PeakSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.base = pid, 0, tree_rss(pid)  # base: idle, before the push
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the peers --------------------------------------------------------------------

class OpenSSHGit:
    """C git's receive-pack behind a real sshd on a free loopback port."""

    def __init__(self, work: Path, client_pub: Path) -> None:
        self.dir = work / "sshd"
        self.dir.mkdir()
        self.port = free_port()
        host_key = self.dir / "host_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                       check=True)
        auth = self.dir / "authorized_keys"
        shutil.copy(client_pub, auth)
        auth.chmod(0o600)
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {auth}\nPidFile {self.dir / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                     stderr=open(self.dir / "sshd.log", "wb"))
        for _ in range(100):
            try:
                import socket
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)

    def url(self, repo: Path) -> str:
        return f"ssh://{os.environ.get('USER', 'root')}@127.0.0.1:{self.port}{repo}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def timed_push(src: Path, url: str, key: Path, port: int, client: list[str]) -> float:
    ssh = (f"ssh -i {key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
           f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -p {port}")
    started = time.monotonic()
    proc = subprocess.run(["git", "-C", str(src), *client, "push", "-q", url, "main:bench"],
                          env=git_env(src, GIT_SSH_COMMAND=ssh), capture_output=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"push to {url} failed:\n{proc.stderr.decode()}")
    return elapsed


def report(mode: str, size: int, rounds: int,
           results: dict[str, list[tuple[float, int, int]]]) -> None:
    med = {k: statistics.median(t for t, _, _ in v) for k, v in results.items()}
    peak = {k: max(m for _, m, _ in v) for k, v in results.items()}
    idle = {k: min(b for _, _, b in v) for k, v in results.items()}
    print(f"\n[{mode}] pack {size / 1e6:.1f} MB, {rounds} rounds, median times:")
    for name in ("c-git", "shipway"):
        print(f"  {name:8s} {med[name]:6.2f} s  {size / 1e6 / med[name]:6.1f} MB/s  "
              f"server memory idle {idle[name] / 1e6:5.1f} MB, peak {peak[name] / 1e6:6.1f} MB "
              f"({peak[name] / size:.2f}x pack)")
    print(f"  time ratio shipway / c-git: {med['shipway'] / med['c-git']:.2f} (goal <= 1.3)")
    print(f"  shipway peak memory / pack: {peak['shipway'] / size:.2f} (goal <= 2.0)\n",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    # requests would let a ~/.netrc entry for 127.0.0.1 override the API key.
    os.environ["NETRC"] = os.devnull

    work = Path(tempfile.mkdtemp(prefix="push-bench-"))
    server = sshd = None
    try:
        src = work / "src"
        print("generating the repository ...", flush=True)
        make_source(src)
        size = pack_size(src)
        print(f"pack: {size / 1e6:.1f} MB", flush=True)
        key = work / "client_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)

        server = ShipwayServer(work / "shipway").start()
        user = server.signup()
        r = user.api.post("/api/account/ssh_keys",
                          json={"key": key.with_suffix(".pub").read_text().strip()})
        assert r.status_code == 201, r.text
        sshd = OpenSSHGit(work, key.with_suffix(".pub"))

        # The default client spends most of a push in its own delta search;
        # pack.window=0 takes that out so the servers' side dominates.
        modes = {"default client": [], "client pack.window=0": ["-c", "pack.window=0"]}
        for mode, client in modes.items():
            results: dict[str, list[tuple[float, int, int]]] = {"shipway": [], "c-git": []}
            for n in range(args.rounds):
                bare = work / f"cgit-{len(mode)}-{n}.git"
                subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
                with PeakSampler(sshd.proc.pid) as mem:
                    t = timed_push(src, sshd.url(bare), key, sshd.port, client)
                results["c-git"].append((t, mem.peak, mem.base))
                shutil.rmtree(bare)
                app = user.api.post("/api/apps", json={}).json()["name"]
                with PeakSampler(server.proc.pid) as mem:
                    t = timed_push(src, f"ssh://git@127.0.0.1:{server.ssh_port}/{app}.git",
                                   key, server.ssh_port, client)
                results["shipway"].append((t, mem.peak, mem.base))
                user.api.delete(f"/api/apps/{app}")
                print(f"{mode}, round {n + 1}: c-git {results['c-git'][-1][0]:.2f}s, "
                      f"shipway {results['shipway'][-1][0]:.2f}s", flush=True)
            report(mode, size, args.rounds, results)
    finally:
        if sshd:
            sshd.stop()
        if server:
            server.stop()
            server.cleanup_docker()
            _stop_nginx(server.data_dir)  # the router's proxy outlives the server
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
