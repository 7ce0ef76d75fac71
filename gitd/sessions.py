"""Open SSH sessions and `ps:ssh` tunnels, so that a user whose right ends
loses them at once: a collaborator removed from an app loses their tunnels
to its replicas, a removed SSH key loses every connection it opened.

The controller calls `revoke` (any thread) right after such a change in this
process; a periodic re-check (SHIPWAY_SSH_SESSION_RECHECK seconds) catches
changes made by another process sharing the database. All state is touched
on the reactor thread only.
"""
from __future__ import annotations

from typing import Any

import attrs
from twisted.conch.ssh import transport
from twisted.internet import reactor, task, threads
from twisted.logger import Logger

from controller.errors import ShipwayError
from controller.revocation import Revocation

log = Logger()


@attrs.define(eq=False)
class Tunnel:
    avatar: Any  # gitd.ssh.GitAvatar
    app: str
    channel: Any  # the forwarding channel


class Sessions:
    def __init__(self, controller: Any, recheck_seconds: float = 15) -> None:
        self.controller = controller
        self.avatars: set[Any] = set()  # each logged-in connection's avatar
        self.tunnels: set[Tunnel] = set()
        self._sweep = task.LoopingCall(self._recheck)
        self.recheck_seconds = recheck_seconds

    # --- bookkeeping (reactor thread) ------------------------------------------
    def add_avatar(self, avatar: Any) -> None:
        self.avatars.add(avatar)
        if self.recheck_seconds > 0 and not self._sweep.running:
            self._sweep.start(self.recheck_seconds, now=False).addErrback(
                lambda f: log.failure("ssh session re-check stopped", f))

    def remove_avatar(self, avatar: Any) -> None:
        self.avatars.discard(avatar)
        self.tunnels = {t for t in self.tunnels if t.avatar is not avatar}

    def add_tunnel(self, avatar: Any, app: str, channel: Any) -> None:
        tunnel = Tunnel(avatar, app, channel)
        self.tunnels.add(tunnel)
        closed = channel.closed

        def forget() -> None:
            self.tunnels.discard(tunnel)
            closed()

        channel.closed = forget

    # --- revocation ---------------------------------------------------------------
    def revoke(self, event: Revocation) -> None:
        """From any thread: end what `event` takes away."""
        reactor.callFromThread(self._revoke, event)

    def _revoke(self, event: Revocation) -> None:
        if event.key_fingerprint is not None or event.app is None:
            for avatar in list(self.avatars):
                if avatar.user.id == event.user_id and event.key_fingerprint in (
                        None, avatar.key_fingerprint):
                    log.info("ssh: ending {user}'s connection: its key was removed",
                             user=avatar.user.email)
                    self._disconnect(avatar)
            return
        for tunnel in list(self.tunnels):
            if tunnel.avatar.user.id == event.user_id and tunnel.app == event.app:
                log.info("ps:ssh: ending {user}'s session on {app}: access removed",
                         user=tunnel.avatar.user.email, app=tunnel.app)
                self._close(tunnel)

    def _close(self, tunnel: Tunnel) -> None:
        self.tunnels.discard(tunnel)
        client = getattr(tunnel.channel, "client", None)
        if client is not None and client.transport is not None:
            client.transport.loseConnection()  # the replica's side
        tunnel.channel.loseConnection()

    def _disconnect(self, avatar: Any) -> None:
        for tunnel in [t for t in self.tunnels if t.avatar is avatar]:
            self._close(tunnel)
        self.avatars.discard(avatar)
        avatar.revoked = True  # no new channel on this connection
        conn = getattr(avatar, "conn", None)  # set by conch when the connection starts
        if conn is not None and conn.transport is not None:
            conn.transport.sendDisconnect(transport.DISCONNECT_BY_APPLICATION,
                                          b"your SSH key was removed")

    # --- the periodic re-check --------------------------------------------------
    def _recheck(self) -> Any:
        avatars = list(self.avatars)
        tunnels = [(t.avatar, t.app) for t in self.tunnels]
        if not avatars:
            return None
        d = threads.deferToThread(self._still_allowed, avatars, tunnels)
        d.addCallback(self._apply)
        d.addErrback(lambda f: log.failure("ssh session re-check failed", f))
        return d

    def _still_allowed(self, avatars: list[Any], tunnels: list[tuple[Any, str]]
                       ) -> list[Revocation]:
        """Blocking: which of the open sessions lost their right."""
        gone: list[Revocation] = []
        for avatar in avatars:
            owner = self.controller.user_for_ssh_key(avatar.key_blob)
            if owner is None or owner.id != avatar.user.id:
                gone.append(Revocation(avatar.user.id, key_fingerprint=avatar.key_fingerprint))
        for avatar, app in tunnels:
            try:
                self.controller.get_app(avatar.user, app, "write")
            except ShipwayError:
                gone.append(Revocation(avatar.user.id, app=app))
        return gone

    def _apply(self, gone: list[Revocation]) -> None:
        for event in gone:
            self._revoke(event)
