"""A client for HAProxy's runtime API (the admin stats socket).

Every route change is sent here as runtime commands (`add server`, `set
server ... state drain`, `del server`, `add map`, `del map`), so a change
never reloads the proxy and never touches a client connection. One command
batch is one connection to the socket: HAProxy runs the `;`-separated
commands in order and answers each, which is why a change costs the same
with ten apps routed or ten thousand.
"""
from __future__ import annotations

import socket
from typing import Iterable

TIMEOUT = 10.0


class RuntimeError_(RuntimeError):
    """HAProxy refused a runtime command (the message is its answer)."""


class Runtime:
    def __init__(self, path: str) -> None:
        self.path = path

    def raw(self, command: str, timeout: float = TIMEOUT) -> str:
        """Send one command line (possibly `;`-joined) and return the answer."""
        if "\n" in command:
            raise ValueError("a runtime command is one line")
        return self.exchange(command.encode() + b"\n", timeout)

    def with_payload(self, command: str, payload: str, timeout: float = TIMEOUT) -> str:
        """A command with a multi-line payload (`cmd <<`, the lines, a blank
        line), as certificates are sent; the payload may hold no blank line."""
        if "\n\n" in payload or ";" in command or "\n" in command:
            raise ValueError("unsafe runtime payload")
        return self.exchange(f"{command} <<\n{payload.rstrip(chr(10))}\n\n".encode(), timeout)

    def exchange(self, request: bytes, timeout: float = TIMEOUT) -> str:
        """One connection to the admin socket: the request, the whole answer."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
            sock.sendall(request)
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        finally:
            sock.close()
        return b"".join(chunks).decode(errors="replace")

    def run(self, commands: Iterable[str]) -> list[str]:
        """Run commands in one batch; raise if any answer is an error.

        HAProxy separates the answers of a batch by an empty line; commands
        that succeed silently (`enable server`) answer with nothing.
        """
        commands = list(commands)
        if not commands:
            return []
        for c in commands:
            if ";" in c or "\n" in c:
                raise ValueError(f"unsafe runtime command: {c!r}")
        answer = self.raw("; ".join(commands))
        errors = [line for line in answer.splitlines()
                  if _is_error(line)]
        if errors:
            raise RuntimeError_("; ".join(errors))
        return answer.split("\n\n")

    def alive(self) -> bool:
        try:
            return "Name:" in self.raw("show info", timeout=2)
        except OSError:
            return False

    def server_sessions(self, backend: str) -> dict[str, int]:
        """Current sessions per server of one backend (from `show stat`)."""
        out = self.raw(f"show stat {backend} 4 -1")
        lines = out.splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        header = lines[0][2:].split(",")
        idx_sv, idx_cur = header.index("svname"), header.index("scur")
        result = {}
        for line in lines[1:]:
            fields = line.split(",")
            if len(fields) > idx_cur and fields[0] == backend:
                result[fields[idx_sv]] = int(fields[idx_cur] or 0)
        return result

    def servers(self, backend: str) -> dict[str, tuple[str, int, int, int]]:
        """name -> (address, port, operational state, admin state flags) from
        `show servers state` (operational 2: running; admin flags: 0x01
        forced maintenance, 0x02 inherited, 0x04 `disabled` in the file
        (kept after `state ready`), 0x08/0x10/0x20 drain)."""
        out = self.raw(f"show servers state {backend}")
        result = {}
        for line in out.splitlines():
            if not line or line[0] in "#1" and " " not in line or line.startswith("#"):
                continue
            fields = line.split()
            # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state
            # ... srv_port is field 18
            if len(fields) > 18 and fields[1] == backend:
                result[fields[3]] = (fields[4], int(fields[18]), int(fields[5]), int(fields[6]))
        return result

    def map_entries(self, map_path: str) -> dict[str, str]:
        out = self.raw(f"show map {map_path}")
        result = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3:
                result[parts[1]] = parts[2]
        return result


def _is_error(line: str) -> bool:
    low = line.lower()
    return (low.startswith("unknown ") or "no such" in low or "not found" in low
            or low.startswith("error") or "can't" in low or "cannot" in low
            or "invalid" in low or "requires" in low or "must be" in low
            or "unable" in low or "failed" in low or "already exists" in low
            or "permission denied" in low)
