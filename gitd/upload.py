"""Fetches: C git's upload-pack as a child process, run from a worker thread.

Why a thread and `subprocess` rather than `reactor.spawnProcess`: the
server runs the reactor without signal handlers, so Twisted never hears
SIGCHLD and a child's end can go unnoticed. Here the worker waits for the
child itself; its output goes through the same flow-controlled ThreadOutput
as receive-pack's.
"""
from __future__ import annotations

import subprocess
import tempfile
import threading
from typing import Callable

from gitd.body import BadBody, BodyTooLarge
from gitd.ingest import Source


def run_upload_pack(argv: list[str], env: dict[str, str], source: Source | bytes,
                    write: Callable[[bytes], None],
                    write_err: Callable[[bytes], None] | None = None) -> int:
    """Blocking: pump `source` to the child's stdin and its stdout to
    `write` until it exits; returns its exit status."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, bufsize=0)
        assert proc.stdin is not None and proc.stdout is not None
        feeder = threading.Thread(target=_feed, args=(proc, source), daemon=True,
                                  name="upload-pack stdin")
        feeder.start()
        try:
            while chunk := proc.stdout.read(65536):
                write(chunk)
        except BaseException:
            proc.kill()
            raise
        finally:
            code = proc.wait()
            feeder.join(timeout=5)
        if write_err is not None:
            err.seek(0)
            text = err.read()
            if text:
                write_err(text)
    return code


def _feed(proc: subprocess.Popen, source: Source | bytes) -> None:
    stdin = proc.stdin
    try:
        if isinstance(source, bytes):
            stdin.write(source)
            return
        while True:
            chunk = source.recv(65536, 0.2)
            if chunk:
                stdin.write(chunk)
            elif source.eof or proc.poll() is not None:
                return
    except (BrokenPipeError, OSError, ValueError, BadBody, BodyTooLarge):
        # upload-pack then sees the input end, fails, and says so.
        return
    finally:
        try:
            stdin.close()
        except OSError:
            pass
