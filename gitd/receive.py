"""The one receive-pack handler both transports run (in a worker thread).

dulwich speaks the protocol (pkt-lines, capabilities, sideband); the pack
goes through a quarantine into C git's index-pack (gitd/ingest.py); then the
pre-receive pipeline decides each ref while the objects are in the store and
no ref has moved, so a rejected push leaves every branch where it was.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from dulwich.errors import GitProtocolError, HangupException
from dulwich.protocol import (
    SIDE_BAND_CHANNEL_DATA, SIDE_BAND_CHANNEL_PROGRESS, Protocol, extract_capabilities,
    format_ref_line, pkt_line, symref_capabilities,
)
from dulwich.refs import check_ref_format
from dulwich.repo import Repo
from twisted.logger import Logger

from controller.models import App, User
from gitd.ingest import PackError, Quarantine, Source
from gitd.repos import RepoStore
from hooks.interface import ZERO_SHA, Push, PushOptions, RefUpdate
from hooks.pipeline import ref_value

log = Logger()

CAPABILITIES = [b"report-status", b"delete-refs", b"side-band-64k", b"quiet",
                b"ofs-delta", b"push-options", b"agent=shipway/0.1", b"object-format=sha1"]
HEX = set("0123456789abcdef")


class ProtocolFailure(Exception):
    """The client sent something that is not receive-pack protocol."""


def parse_push_options(raw: list[str], headers: frozenset[str] = frozenset()) -> PushOptions:
    """`-o hot` / `-o clean` (also `hot=true`), or the HTTP headers."""
    def on(name: str) -> bool:
        if name in headers:
            return True
        for opt in raw:
            key, _, value = opt.partition("=")
            if key.strip().lower() == name and value.strip().lower() in ("", "1", "true", "yes"):
                return True
        return False
    return PushOptions(hot=on("hot"), clean=on("clean"), raw=tuple(raw))


def _valid_sha(value: bytes) -> bool:
    return len(value) == 40 and set(value.decode("ascii", "replace")) <= HEX


class ReceivePack:
    """One receive-pack session. `stateless` is smart HTTP (the
    advertisement was a separate request); SSH sends it first."""

    def __init__(self, *, pipeline: Any, repos: RepoStore, repo_bytes: int, app: App,
                 user: User, source: Source, read: Callable[[int], bytes],
                 write: Callable[[bytes], None], stateless: bool = False,
                 header_options: frozenset[str] = frozenset(),
                 blob_bytes: int = 500 * 1024 * 1024) -> None:
        self.pipeline, self.repos, self.repo_bytes = pipeline, repos, repo_bytes
        self.blob_bytes = blob_bytes  # settings' limits.blob_bytes
        self.app, self.user = app, user
        self.source = source
        self.proto = Protocol(read, write)
        self.stateless = stateless
        self.header_options = header_options
        self.repo_path = repos.ensure(app.name)
        self.caps: set[bytes] = set()
        self._write_lock = threading.Lock()
        self.client_gone = False

    # --- advertisement ---------------------------------------------------
    def advertise(self) -> None:
        repo = Repo(str(self.repo_path))
        try:
            refs = sorted((r, s) for r, s in repo.get_refs().items()
                          if r.startswith(b"refs/"))
            symrefs = sorted(repo.refs.get_symrefs().items())
        finally:
            repo.close()
        caps = CAPABILITIES + symref_capabilities(symrefs)
        if not refs:
            refs = [(b"capabilities^{}", ZERO_SHA.encode())]
        self.proto.write_pkt_line(format_ref_line(refs[0][0], refs[0][1], caps))
        for ref, sha in refs[1:]:
            self.proto.write_pkt_line(format_ref_line(ref, sha))
        self.proto.write_pkt_line(None)

    # --- the push ----------------------------------------------------------
    def handle(self) -> None:
        """Serve one push. Raises ProtocolFailure on malformed input before
        anything but the advertisement was written."""
        if not self.stateless:
            try:
                self.advertise()
            except GitProtocolError as err:
                log.info("gitd: {app}: the client hung up at the advertisement ({reason})",
                         app=self.app.name, reason=err)
                return
        updates, options = self._read_commands()
        if not updates:
            return
        status: dict[str, str | None] = {}
        unpack = "ok"
        quarantine = Quarantine(self.repo_path)
        try:
            if any(u.new != ZERO_SHA for u in updates):
                budget = self.repo_bytes - self.repos.size(self.app.name)
                quarantine.receive(self.source, budget)
                if quarantine.pack_bytes > budget:
                    raise PackError(f"push exceeds the repository size limit "
                                    f"({self.repo_bytes} bytes)")
                types = quarantine.check([u.new for u in updates if u.new != ZERO_SHA],
                                         self.blob_bytes)
                quarantine.migrate()
            else:
                types = {}
        except PackError as err:
            unpack = str(err) or "unpacker error"
            self.progress(f"error: {unpack}")
            log.info("gitd: {app} push refused: {reason}", app=self.app.name, reason=unpack)
            self._report(unpack, {u.ref: "unpacker error" for u in updates}, updates)
            return
        finally:
            quarantine.discard()
        accepted = []
        for u in updates:
            reason = self._precheck(u, types)
            status[u.ref] = reason
            if reason is None:
                accepted.append(u)
        moved: set[str] = set()
        if accepted:
            outcome = self._run_pipeline(accepted, options, moved)
            for u in accepted:
                status[u.ref] = outcome.get(u.ref, "not decided")
                if status[u.ref] is None and u.ref not in moved:
                    status[u.ref] = self._move(u)
            RepoStore.fix_head(self.repo_path)
        self._report("ok", status, updates)

    def _read_commands(self) -> tuple[list[RefUpdate], PushOptions]:
        try:
            line = self.proto.read_pkt_line()
            if line is None:
                return [], PushOptions()
            line, caps = extract_capabilities(line)
            self.caps = set(caps)
            updates = []
            while line:
                parts = line.rstrip(b"\n").split(b" ")
                if len(parts) != 3 or not _valid_sha(parts[0]) or not _valid_sha(parts[1]):
                    raise ProtocolFailure(f"malformed push: bad ref update line {line[:100]!r}")
                updates.append(RefUpdate(ref=parts[2].decode("utf-8", "replace"),
                                         old=parts[0].decode(), new=parts[1].decode()))
                line = self.proto.read_pkt_line()
            raw: list[str] = []
            if b"push-options" in self.caps:
                while (opt := self.proto.read_pkt_line()) is not None:
                    raw.append(opt.rstrip(b"\n").decode("utf-8", "replace"))
        except (GitProtocolError, HangupException, ValueError, UnicodeDecodeError) as err:
            raise ProtocolFailure(f"malformed push: {err}") from None
        return updates, parse_push_options(raw, self.header_options)

    def _precheck(self, u: RefUpdate, types: dict[str, str]) -> str | None:
        """What gitd refuses before the pipeline sees the ref."""
        if not check_ref_format(u.ref.encode()):
            return "funny refname"
        current = ref_value(self.repo_path, u.ref)
        if current != u.old:
            return "stale info (fetch first)"
        if u.new != ZERO_SHA:
            kind = types.get(u.new, "missing")
            if kind == "missing":
                return "missing necessary objects"
            if u.ref.startswith("refs/heads/") and kind != "commit":
                return f"not a commit ({kind})"
        return None

    def _run_pipeline(self, accepted: list[RefUpdate], options: PushOptions,
                      moved: set[str]) -> dict[str, str | None]:
        def move_ref(u: RefUpdate) -> str | None:
            reason = self._move(u)
            if reason is None:
                moved.add(u.ref)
            return reason

        push = Push(app=self.app, user=self.user, repo_path=self.repo_path,
                    updates=tuple(accepted), options=options, move_ref=move_ref)
        try:
            return dict(self.pipeline.receive(push, self.progress))
        except NotImplementedError:
            self.progress("the deploy pipeline is not available on this server")
            return {u.ref: "pipeline not available" for u in accepted}

    def _move(self, u: RefUpdate) -> str | None:
        repo = Repo(str(self.repo_path))
        try:
            ref = u.ref.encode()
            if u.new == ZERO_SHA:
                ok = repo.refs.remove_if_equals(ref, u.old.encode())
            else:
                ok = repo.refs.set_if_equals(ref, u.old.encode(), u.new.encode())
        except (OSError, KeyError) as err:
            log.error("gitd: {app} {ref}: {err}", app=self.app.name, ref=u.ref, err=err)
            ok = False
        finally:
            repo.close()
        return None if ok else "failed to update ref"

    # --- output --------------------------------------------------------------
    def progress(self, line: str) -> None:
        """One line for the pusher ("remote: ..."), sent at once."""
        if b"side-band-64k" not in self.caps:
            return
        if self.client_gone:
            return
        data = (line.rstrip("\n") + "\n").encode("utf-8", "replace")
        try:
            with self._write_lock:
                self.proto.write_sideband(SIDE_BAND_CHANNEL_PROGRESS, data)
        except (GitProtocolError, OSError):
            # The pusher hung up. A deploy under way must not be cut short by
            # its output callback failing: carry on, quietly.
            self.client_gone = True

    def _report(self, unpack: str, status: dict[str, str | None],
                updates: list[RefUpdate]) -> None:
        if b"report-status" not in self.caps:
            return
        lines = [pkt_line(f"unpack {unpack}\n".encode())]
        for u in updates:
            reason = status.get(u.ref)
            text = f"ok {u.ref}\n" if reason is None else f"ng {u.ref} {reason}\n"
            lines.append(pkt_line(text.encode("utf-8", "replace")))
        lines.append(pkt_line(None))
        blob = b"".join(lines)
        try:
            with self._write_lock:
                if b"side-band-64k" in self.caps:
                    self.proto.write_sideband(SIDE_BAND_CHANNEL_DATA, blob)
                    self.proto.write_pkt_line(None)
                else:
                    self.proto.write(blob)
        except (GitProtocolError, OSError) as err:
            # The pusher hung up before its report: nothing of ours broke,
            # and what the push did stands. One line, no traceback.
            self.client_gone = True
            log.info("gitd: {app}: the client hung up before the report ({reason})",
                     app=self.app.name, reason=str(err) or type(err).__name__)
