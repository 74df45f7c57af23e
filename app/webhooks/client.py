"""One outbound webhook request: to a checked address only, redirects not followed, bounded in time.

The URL is resolved once and every answer checked (app/webhooks/ssrf.py); the
connection then goes to one of exactly those addresses, and the connected
peer is checked once more, so DNS cannot change the destination between check
and connect. TLS still verifies the certificate against the URL's host name
(sent as SNI). A 3xx is a failure like any non-2xx: the Location header is
never read. The whole attempt (connect, send, headers, body) has one deadline:
when it passes, the socket is shut down, whatever the receiver is doing.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from . import ssrf


@dataclass(frozen=True)
class Response:
    status: int | None  # None when no response arrived
    duration_ms: int
    error: str | None  # short and free of secrets; None for a response
    body_excerpt: str | None  # the response body's first bytes, decoded leniently


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP to one of the target's checked addresses; Host and SNI stay the URL's host."""

    def __init__(self, target: ssrf.Target, timeout: float, allow_private: bool) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.target = target
        self.allow_private = allow_private

    def connect(self) -> None:
        last: OSError | None = None
        for address in self.target.addresses:
            try:
                sock = socket.create_connection((address, self.target.port), timeout=self.timeout)
            except OSError as exc:
                last = exc
                continue
            peer = ipaddress.ip_address(sock.getpeername()[0].split("%", 1)[0])
            if str(peer) != address or ssrf.refusal(peer, self.allow_private):
                sock.close()
                raise ssrf.BlockedTarget("the connection reached an address that was not checked")
            self.sock = self._wrap(sock)
            return
        raise last or OSError("no address to connect to")

    def _wrap(self, sock: socket.socket) -> socket.socket:
        if self.target.scheme != "https":
            return sock
        context = ssl.create_default_context()
        return context.wrap_socket(sock, server_hostname=self.target.host)


def _guard(connection: _PinnedConnection, seconds: float) -> threading.Timer:
    """Shut the socket down when the deadline passes (a green thread under gevent)."""

    def expire() -> None:
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    max_body: int,
    allow_private: bool,
    https_only: bool,
) -> Response:
    """POST `body` to `url` under the SSRF guard; never raises for the receiver's behaviour."""
    started = time.monotonic()

    def done(status: int | None, error: str | None, excerpt: str | None = None) -> Response:
        return Response(status, round((time.monotonic() - started) * 1000), error, excerpt)

    try:
        target = ssrf.resolve_target(url, allow_private=allow_private, https_only=https_only)
    except ssrf.BlockedTarget as exc:
        return done(None, f"blocked: {exc}")
    remaining = timeout - (time.monotonic() - started)  # the name lookup spent part of the deadline
    if remaining <= 0:
        return done(None, "timeout")
    connection = _PinnedConnection(target, remaining, allow_private)
    timer = _guard(connection, remaining)
    try:
        connection.request("POST", target.path, body=body, headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        excerpt = response.read(max_body).decode("utf-8", errors="replace")
        return done(response.status, None, excerpt)
    except ssrf.BlockedTarget as exc:
        return done(None, f"blocked: {exc}")
    except (OSError, http.client.HTTPException) as exc:
        expired = time.monotonic() - started >= timeout
        return done(None, "timeout" if expired or isinstance(exc, TimeoutError) else f"{type(exc).__name__}")
    finally:
        timer.cancel()
        connection.close()
