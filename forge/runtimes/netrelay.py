"""The network of a sandbox whose network is "api": only the model API's host and port reachable.

    python -I -S forge/runtimes/netrelay.py --target HOST:PORT --listen ADDR:PORT -- argv...

Run by the attempt's command line just before bubblewrap, as root (standard library only). It
forks a relay that stays in the machine's network namespace, moves itself into a new network
namespace holding only `lo` (brought up), listens there on ADDR:PORT, hands the listening
socket to the relay (SCM_RIGHTS over a socket pair), and execs `argv` (bubblewrap, which keeps
this namespace). Inside, a connection to ADDR:PORT — the API's address as the agent sees it (its
host name maps to ADDR in the sandbox's /etc/hosts) — is relayed byte for byte to HOST:PORT
outside, TLS and all; nothing else has a route. The relay is in the attempt's process group and
cgroup, so it ends with the attempt.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import sys
import threading

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _serve(client: socket.socket, target: tuple[str, int]) -> None:
    with client:
        try:
            upstream = socket.create_connection(target, timeout=30)
        except OSError as e:
            print(f"forge netrelay: cannot reach {target[0]}:{target[1]}: {e}", file=sys.stderr)
            return
        with upstream:
            upstream.settimeout(None)
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()


def _relay(channel: socket.socket, target: tuple[str, int]) -> None:
    """The relay's life: receive the listening socket, then serve every connection."""
    fds = array.array("i")
    _, ancillary, _, _ = channel.recvmsg(1, socket.CMSG_LEN(fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: fds.itemsize])
    if not fds:
        os._exit(1)
    listener = socket.socket(fileno=fds[0])
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_serve, args=(client, target), daemon=True).start()


def main(argv: list[str]) -> None:
    """Fork the relay, make the network namespace, exec the command (exit 125 if it cannot)."""
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    target = _address(options[options.index("--target") + 1])
    listen = _address(options[options.index("--listen") + 1])
    parent_end, relay_end = socket.socketpair()
    if os.fork() == 0:  # the relay: stays in the machine's network namespace
        parent_end.close()
        try:
            _relay(relay_end, target)
        finally:
            os._exit(0)
    relay_end.close()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        print(f"forge netrelay: cannot unshare the network: {os.strerror(error)}", file=sys.stderr)
        sys.exit(125)
    _lo_up()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(listen)
    listener.listen(64)
    fds = array.array("i", [listener.fileno()])
    parent_end.sendmsg([b"L"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
    listener.close()
    parent_end.close()
    os.execvp(command[0], command)  # noqa: S606 - the attempt's own argv, no shell


if __name__ == "__main__":
    main(sys.argv[1:])
