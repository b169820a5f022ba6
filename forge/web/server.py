"""Serving the dashboard: a socket on 127.0.0.1 only, uvicorn, and a clean stop.

The socket is bound before anything else, so a port in use is one clear error and port 0
picks a free one whose number is known before the address is printed. uvicorn writes no
access log (an address may carry the token) and configures no logging of its own: its
records go through Forge's structlog set-up, which masks the token as every secret.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType

import redis
import uvicorn

from events.redact import register_secrets
from events.store import EventStore
from forge.errors import ForgeError
from forge.settings import Settings
from forge.web.app import create_app
from forge.web.auth import new_token

__all__ = ["HOST", "WebServer"]

HOST = "127.0.0.1"
START_SECONDS = 30.0  # how long the first replay of the log may take
GRACE_SECONDS = 2  # how long open pages get to close their streams at a stop


class WebServer:
    """The dashboard of one namespace's log, on 127.0.0.1:`port` (0: any free port)."""

    def __init__(
        self, settings: Settings, client: redis.Redis, port: int, token: str | None = None
    ) -> None:
        self.token = token or new_token()
        register_secrets([self.token])  # masked in every log line, like any secret
        self.socket = _bind(port)
        self.port: int = self.socket.getsockname()[1]
        store = EventStore(client, settings.redis.namespace)
        self.app = create_app(store, settings, self.token, self.port)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=GRACE_SECONDS,
            server_header=False,
        )
        self.server = _Server(config, self.app.state.live.end_streams)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The address to open, token included."""
        return f"http://{HOST}:{self.port}/?token={self.token}"

    @property
    def bare_url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def run(self) -> None:
        """Serve in this thread until `stop()` (or SIGINT/SIGTERM in the main thread)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.app.state.live.stop()
            self.socket.close()

    def start(self) -> None:
        """Serve in a background thread; returns once it answers."""
        self._thread = threading.Thread(target=self.run, name="forge-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not self.server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if not self.server.started:
            raise ForgeError(f"the dashboard could not start on {HOST}:{self.port}")

    def stop(self) -> None:
        """End open streams, then the server."""
        self.app.state.live.end_streams()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=GRACE_SECONDS + 5)


class _Server(uvicorn.Server):
    """uvicorn's server, which ends the open event streams as soon as it is asked to stop (it
    waits for open responses to end, and a stream would not end by itself)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        reason = "the port is in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise ForgeError(f"cannot listen on {HOST}:{port}: {reason}") from None
    sock.set_inheritable(False)
    return sock
