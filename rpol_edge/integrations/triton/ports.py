"""The ports of a server ``rpol-edge serve`` starts: free ones picked, a port in use named (with the
program that holds it, where this user may see it), and the proof that the started server listens
on its ports itself.

Why the proof: a health probe that asks ``http://HOST:PORT`` gets an answer from whatever listens
there. With another server on that port (or only on the metrics port, which Triton binds last, and
fails on, after HTTP already answers), the probe would call the new server ready while it is
exiting. A listening socket is matched to its process through ``/proc`` (Linux, where ``serve``
runs): the socket's inode in ``/proc/PID/net/tcp{,6}`` and among ``/proc/PID/fd``.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

LISTEN = "0A"
"""The TCP state column of a listening socket in ``/proc/net/tcp``."""


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports free on ``host`` now (the kernel's pick: ``serve --http-port 0`` and
    the like, tests, benchmarks)."""
    socks = [_socket(host) for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    # As the server's own listeners do: a port whose last connections linger in TIME_WAIT is free.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s


def bind_problem(host: str, port: int) -> OSError | None:
    """Why a server could not listen on ``host:port`` now (None: it could)."""
    s = _socket(host)
    try:
        s.bind((host, port))
        return None
    except OSError as exc:
        return exc
    finally:
        s.close()


def port_in_use(port: int, flag: str, host: str) -> str:
    """The one line for a port another program holds: which port, which flag, who holds it."""
    who = holder(port)
    return (
        f"port {port} ({flag}) is in use on {host}{f' by {who}' if who else ''}: stop that program "
        f"or choose another port ({flag} 0 picks a free one)"
    )


def check_free(host: str, ports: dict[str, int]) -> str:
    """The first of ``ports`` (flag -> port) a server cannot listen on, as one line; "" if none."""
    for flag, port in ports.items():
        exc = bind_problem(host, port)
        if exc is not None:
            return cannot_listen(exc, host, port, flag)
    return ""


def cannot_listen(exc: OSError, host: str, port: int, flag: str) -> str:
    """Why ``bind`` failed, in the user's words."""
    if exc.errno == errno.EADDRINUSE:
        return port_in_use(port, flag, host)
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host}: not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"port {port} ({flag}): only root may listen below 1024; choose a port above"
    return f"port {port} ({flag}) on {host}: {exc.strerror or exc}"


def listening(table: str) -> dict[int, int]:
    """Socket inode -> port of the listening sockets in a ``/proc/net/tcp`` or ``tcp6`` table."""
    found: dict[int, int] = {}
    for line in table.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 9 and cols[3] == LISTEN:
            found[int(cols[9])] = int(cols[1].rsplit(":", 1)[1], 16)
    return found


def _listen_table(pid: int | str) -> dict[int, int]:
    table: dict[int, int] = {}
    for name in ("tcp", "tcp6"):
        try:
            table.update(listening(Path(f"/proc/{pid}/net/{name}").read_text()))
        except OSError:
            continue
    return table


def _socket_inodes(pid: int | str) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    return inodes


def ports_of(pid: int) -> set[int] | None:
    """The TCP ports process ``pid`` itself listens on (empty when it is gone); None where this
    system does not let its parent read its file descriptors (no proof to be had)."""
    try:
        os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return set()
    except PermissionError:
        return None
    table = _listen_table(pid)
    return {table[i] for i in _socket_inodes(pid) if i in table}


def holder(port: int) -> str:
    """``NAME (pid N)`` of a process of this user listening on ``port``; "" when none is seen
    (another user's process, another network namespace)."""
    inodes = {i for i, p in _listen_table("self").items() if p == port}
    if not inodes:
        return ""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and _socket_inodes(proc.name) & inodes:
            try:
                return f"{(proc / 'comm').read_text().strip()} (pid {proc.name})"
            except OSError:
                continue
    return ""
