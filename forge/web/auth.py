"""The dashboard's door: every request must carry the token printed at start.

A loopback port is reachable by every local user, so nothing is served without the token:
`?token=` on a page's address (answered with an HttpOnly, SameSite=Strict cookie and a
redirect to the same address without the token, so it stays out of the history), the
cookie afterwards, or an `Authorization: Bearer` / `X-Forge-Token` header for scripts. The
comparison takes constant time. A request whose Host is not the loopback address is refused
too (a page of another site rebinding its name to 127.0.0.1 gets no further).
"""

from __future__ import annotations

import hmac
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["COOKIE", "TokenGate", "new_token"]

COOKIE = "forge_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class TokenGate:
    """ASGI middleware: pass a request on only if it carries the token."""

    def __init__(self, app: ASGIApp, token: str, port: int | None = None) -> None:
        self.app = app
        self.token = token
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; no websocket route exists
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not self._loopback(headers.get("host", "")):
            await _refuse(send, 403, "forbidden: the dashboard answers on 127.0.0.1 only\n")
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), True)
        given = [v for k, v in query if k == "token"]
        if given:
            if not _same(given[-1], self.token):
                await _refuse(send, 401, "unauthorized: wrong token\n")
                return
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            path = b"/" + (scope.get("raw_path") or scope["path"].encode()).lstrip(b"/")
            await _enter(send, path + (b"?" + rest.encode() if rest else b""), self.token)
            return
        if self._carries_token(headers):
            await self.app(scope, receive, send)
            return
        await _refuse(
            send, 401, "unauthorized: open the address `forge web` printed (it holds the token)\n"
        )

    def _loopback(self, host: str) -> bool:
        name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
        if name not in LOOPBACK_HOSTS:
            return False
        return self.port is None or not port or port == str(self.port)

    def _carries_token(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and _same(auth[7:].strip(), self.token):
            return True
        if _same(headers.get("x-forge-token"), self.token):
            return True
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no token
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and _same(morsel.value, self.token)


async def _refuse(send: Send, status: int, text: str) -> None:
    await _respond(send, status, text.encode(), [(b"content-type", b"text/plain; charset=utf-8")])


async def _enter(send: Send, location: bytes, token: str) -> None:
    cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    await _respond(
        send,
        303,
        b"",
        [(b"location", location), (b"set-cookie", cookie.encode("latin-1"))],
    )


async def _respond(send: Send, status: int, body: bytes, headers: list[Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"referrer-policy", b"no-referrer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
