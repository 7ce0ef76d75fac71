"""`ps:ssh` through the git SSH server: the `direct-tcpip` channel that
`ssh -J git@HOST:2222 app@[REPLICA.]APP` opens is connected to that
replica's own SSH server (on its 127.0.0.1 port), once the user is known to
have write access to the app. The replica's sshd then checks the user's key
itself, end to end: the gateway only carries bytes, never keys or shells.

Resolved on the reactor thread, because conch opens channels synchronously:
one database read and one Docker list per session, so that a refusal reaches
the user as the channel-open error their ssh prints.
"""
from __future__ import annotations

import re
from typing import Any

from twisted.conch import error
from twisted.conch.ssh import connection, forwarding
from twisted.logger import Logger

from controller.errors import NotFound

log = Logger()

# [REPLICA.]APP: REPLICA a prefix of the container id (as `ps` shows it).
_TARGET = re.compile(r"^(?:(?P<replica>[0-9a-f]{4,64})\.)?(?P<app>[a-z][a-z0-9-]{1,62})\Z")


def parse_target(host: str) -> tuple[str, str | None]:
    """(app, replica id prefix or None); ValueError for anything else."""
    found = _TARGET.match(host.lower())
    if found is None:
        raise ValueError(f"not [REPLICA.]APP: {host[:100]!r}")
    return found["app"], found["replica"]


def open_replica_tunnel(window: int, max_packet: int, data: bytes, avatar: Any) -> Any:
    (host, _port), _origin = forwarding.unpackOpen_direct_tcpip(data)
    prohibited = connection.OPEN_ADMINISTRATIVELY_PROHIBITED
    try:
        app, replica = parse_target(host.decode("ascii") if isinstance(host, bytes) else host)
    except (ValueError, UnicodeDecodeError):
        raise error.ConchError(prohibited, "ssh to [REPLICA.]APP, e.g. `shipway ps:ssh -a APP`")
    try:
        avatar.git.controller.get_app(avatar.user, app, "write")
        hostport = avatar.git.services.runner.ssh_endpoint(app, replica)
    except NotFound:
        raise error.ConchError(prohibited, f"no app named {app} that you can change")
    except LookupError as e:
        raise error.ConchError(connection.OPEN_CONNECT_FAILED, str(e))
    log.info("ps:ssh: {user} to {app} {replica}", user=avatar.user.email, app=app,
             replica=replica or "(first running)")
    channel = forwarding.SSHConnectForwardingChannel(hostport, remoteWindow=window,
                                                     remoteMaxPacket=max_packet, avatar=avatar)
    if getattr(avatar, "sessions", None) is not None:  # ended when access is removed
        avatar.sessions.add_tunnel(avatar, app, channel)
    return channel
