"""git's `GIT_PROXY_COMMAND` for git:// fetches: carries the connection
through the fetch guard (builder/fetch_guard.py) with a CONNECT, so git://
is checked exactly as http and https are.

Run as a script by path (stdlib only): `python git_proxy_command.py
GUARD_PORT HOST PORT`; git talks to it on stdin and stdout.
"""
from __future__ import annotations

import os
import socket
import sys
import threading


def _pump_stdin(sock: socket.socket) -> None:
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    guard_port, host, port = argv[1], argv[2], argv[3]
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sock = socket.create_connection(("127.0.0.1", int(guard_port)))
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    status, _, rest = head.partition(b"\r\n\r\n")
    if b" 200 " not in status.split(b"\r\n", 1)[0] + b" ":
        sys.stderr.write("fetch refused by the fetch guard\n")
        return 1
    if rest:
        os.write(1, rest)
    threading.Thread(target=_pump_stdin, args=(sock,), daemon=True).start()
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            os.write(1, data)
    except OSError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
