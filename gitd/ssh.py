"""The SSH transport (Twisted conch): public-key login against the keys users
registered, and exactly two commands, `git-receive-pack '<app>.git'` and
`git-upload-pack '<app>.git'`. Never a shell here; `ps:ssh` tunnels through
to a replica's own SSH server (gitd/tunnel.py).

Both services run in a worker thread bridged to the channel (receive:
gitd/receive.py; upload: C git's upload-pack, gitd/upload.py); output
follows the channel's window, input pauses the connection when it piles up.
"""
from __future__ import annotations

import shlex
import struct
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch import avatar, error
from twisted.conch.checkers import ISSHPrivateKey
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh import channel, common, connection, factory, keys, userauth
from twisted.conch.ssh.connection import EXTENDED_DATA_STDERR
from twisted.cred import portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, reactor, threads
from twisted.logger import Logger
from zope.interface import implementer

from controller.errors import ShipwayError
from controller.keys import fingerprint
from controller.models import User
from gitd.bridge import ThreadInput, ThreadOutput
from gitd.receive import ProtocolFailure
from gitd.service import SERVICES, GitParts, GitService, git_service, parse_repo_arg
from gitd.sessions import Sessions
from gitd.tunnel import open_replica_tunnel
from gitd.upload import run_upload_pack

log = Logger()

# A larger window than conch's 128 KiB default: fewer round trips of window
# adjustments on a big pack. ThreadInput's high-water mark bounds memory.
LOCAL_WINDOW = 2 * 1024 * 1024
LOCAL_MAX_PACKET = 32768


def host_key(data_dir: Path) -> keys.Key:
    """The server's host key, generated on first start and kept, so clients'
    known_hosts stay valid across restarts."""
    path = Path(data_dir) / "ssh_host_ed25519_key"
    if not path.exists():
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption())
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pem)
        tmp.chmod(0o600)
        tmp.replace(path)
    return keys.Key.fromFile(str(path))


@attrs.frozen
class LoggedIn:
    """The avatar id: who logged in, and with which key (a session ends
    when its key is removed)."""

    user: User
    key_blob: bytes


@implementer(ICredentialsChecker)
class UserKeyChecker:
    """Checks a public key against the users' registered keys; the avatar id
    names the User, so the session knows who pushed."""

    credentialInterfaces = (ISSHPrivateKey,)

    def __init__(self, controller: Any) -> None:
        self.controller = controller

    @defer.inlineCallbacks
    def requestAvatarId(self, credentials: Any):  # noqa: N802 (Twisted's name)
        user = yield threads.deferToThread(self.controller.user_for_ssh_key, credentials.blob)
        if user is None:
            raise UnauthorizedLogin("unknown key")
        if not credentials.signature:
            raise error.ValidPublicKey()  # conch then asks the client to sign
        key = keys.Key.fromString(credentials.blob)
        if not key.verify(credentials.signature, credentials.sigData):
            raise UnauthorizedLogin("bad signature")
        return LoggedIn(user, bytes(credentials.blob))


@implementer(portal.IRealm)
class GitRealm:
    def __init__(self, git: GitService, sessions: Sessions) -> None:
        self.git, self.sessions = git, sessions

    def requestAvatar(self, avatar_id: LoggedIn, mind: Any, *interfaces: Any):  # noqa: N802
        if IConchUser not in interfaces:
            raise NotImplementedError("only SSH sessions")
        found = GitAvatar(self.git, avatar_id.user, avatar_id.key_blob, self.sessions)
        self.sessions.add_avatar(found)
        return IConchUser, found, lambda: self.sessions.remove_avatar(found)


class GitAvatar(avatar.ConchUser):
    def __init__(self, git: GitService, user: User, key_blob: bytes = b"",
                 sessions: Sessions | None = None) -> None:
        super().__init__()
        self.git, self.user, self.sessions = git, user, sessions
        self.key_blob = key_blob
        self.key_fingerprint = fingerprint(key_blob) if key_blob else None
        self.revoked = False  # set when its key is removed: the connection is ending
        self.channelLookup[b"session"] = GitSession

    def lookupChannel(self, channelType, windowSize, maxPacket, data):  # noqa: N802
        if self.revoked:
            raise error.ConchError(connection.OPEN_ADMINISTRATIVELY_PROHIBITED, "key removed")
        if channelType == b"direct-tcpip":  # ps:ssh (`ssh -J`) to a replica
            return open_replica_tunnel(windowSize, maxPacket, data, self)
        klass = self.channelLookup.get(channelType)
        if klass is None:
            raise error.ConchError(connection.OPEN_UNKNOWN_CHANNEL_TYPE, "unknown channel")
        return klass(localWindow=LOCAL_WINDOW, localMaxPacket=LOCAL_MAX_PACKET,
                     remoteWindow=windowSize, remoteMaxPacket=maxPacket,
                     data=data, avatar=self)


class GitSession(channel.SSHChannel):
    """One `ssh` session: one git command, then exit status and close."""

    name = b"session"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.git: GitService = self.avatar.git
        self.user: User = self.avatar.user
        self.started = False
        self.input: ThreadInput | None = None
        self.output: ThreadOutput | None = None
        self.gone = False

    # --- requests ---------------------------------------------------------
    def request_env(self, data: bytes) -> int:
        return 1  # GIT_PROTOCOL and friends: accepted, protocol v0 is spoken

    def request_pty_req(self, data: bytes) -> int:
        return 1  # so an interactive `ssh` gets the message below

    def request_window_change(self, data: bytes) -> int:
        return 1

    def request_shell(self, data: bytes) -> int:
        if self.started:
            return 0
        self.started = True
        reactor.callLater(0, self.fail, f"Hi {self.user.email}! Shipway does not provide "
                          "shell access; push with git instead.", 1)
        return 1

    def request_exec(self, data: bytes) -> int:
        if self.started:
            return 0
        self.started = True
        self.start(common.getNS(data)[0].decode("utf-8", "replace"))
        return 1

    # --- the command --------------------------------------------------------
    def start(self, command: str) -> None:
        # Buffer from now on: a client may send (and even close its input)
        # before authorization has finished in its thread.
        tcp = self.conn.transport.transport
        self.input = ThreadInput(pause=tcp.pauseProducing, resume=tcp.resumeProducing)
        self.output = ThreadOutput(self.write)
        try:
            words = shlex.split(command)
        except ValueError:
            words = []
        service = words[0] if words else ""
        if service in ("git", ) and len(words) > 1:  # "git receive-pack 'x.git'"
            service, words = f"git-{words[1]}", words[1:]
        app_name = parse_repo_arg(words[1]) if len(words) == 2 else None
        if service not in SERVICES or app_name is None:
            reactor.callLater(0, self.fail, f"shipway: unknown command {command!r}: only "
                              "git-receive-pack and git-upload-pack '<app>.git' are served", 1)
            return
        d = threads.deferToThread(self.git.authorize, self.user, app_name, service)
        d.addCallbacks(lambda app: self._run(service, app), self._refused,
                       errbackArgs=(app_name,))
        d.addErrback(self._crashed)

    def _refused(self, failure: Any, app_name: str) -> None:
        if failure.check(ShipwayError):
            self.fail(f"shipway: app {app_name} not found (or you do not have access)", 1)
        else:
            self._crashed(failure)

    def _crashed(self, failure: Any) -> None:
        log.failure("gitd ssh: session crashed", failure)
        self.fail("shipway: internal error", 1)

    def _run(self, service: str, app: Any) -> None:
        assert self.input is not None and self.output is not None
        if service == "git-upload-pack":
            def stderr(data: bytes) -> None:
                reactor.callFromThread(self.writeExtended, EXTENDED_DATA_STDERR, data)

            def work() -> int:
                argv, env = self.git.upload_pack_argv(app)
                return run_upload_pack(argv, env, self.input, self.output.write, stderr)
        else:
            def work() -> int:
                self.git.receive_pack(app, self.user, source=self.input, read=self.input.read,
                                      write=self.output.write).handle()
                return 0

        def done(code: Any) -> None:
            self.finish(code if isinstance(code, int) else 0)

        def failed(failure: Any) -> None:
            if failure.check(ProtocolFailure):
                self.fail(f"shipway: {failure.value}", 128)
            elif failure.check(BrokenPipeError):
                self.finish(1)
            else:
                self._crashed(failure)

        threads.deferToThread(work).addCallbacks(done, failed)

    # --- the channel ----------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.input is not None:
            self.input.feed(data)

    def eofReceived(self) -> None:  # noqa: N802
        if self.input is not None:
            self.input.feed_eof()

    def stopWriting(self) -> None:  # noqa: N802 (the client's window is full)
        if self.output is not None:
            self.output.pauseProducing()

    def startWriting(self) -> None:  # noqa: N802
        if self.output is not None:
            self.output.resumeProducing()

    def closed(self) -> None:
        self.gone = True
        if self.input is not None:
            self.input.feed_eof()
        if self.output is not None:
            self.output.close()
        super().closed()

    def fail(self, message: str, code: int) -> None:
        self.writeExtended(EXTENDED_DATA_STDERR, (message + "\n").encode())
        self.finish(code)

    def finish(self, code: int) -> None:
        """Exit status and close, once everything written has left the buffer."""
        if self.closing or self.gone:
            return
        if self.buf or self.extBuf:
            reactor.callLater(0.05, self.finish, code)
            return
        try:
            self.conn.sendRequest(self, b"exit-status", struct.pack(">L", code & 0xFF))
            self.conn.sendEOF(self)
        except Exception:
            pass
        self.loseConnection()


class GitSSHFactory(factory.SSHFactory):
    services = {
        b"ssh-userauth": userauth.SSHUserAuthServer,
        b"ssh-connection": connection.SSHConnection,
    }

    def __init__(self, key: keys.Key, portal_: portal.Portal) -> None:
        self.publicKeys = {key.sshType(): key.public()}
        self.privateKeys = {key.sshType(): key}
        self.portal = portal_

    def getPrimes(self):  # noqa: N802 (no moduli file: fixed groups and ECDH only)
        return None


def make_ssh_factory(services: GitParts) -> factory.SSHFactory:
    git = git_service(services)
    sessions = Sessions(services.controller, services.settings.ssh_session_recheck)
    if hasattr(services.controller, "on_revoke"):  # removals end sessions at once
        services.controller.on_revoke(sessions.revoke)
    p = portal.Portal(GitRealm(git, sessions), [UserKeyChecker(services.controller)])
    return GitSSHFactory(host_key(services.settings.data_dir), p)
