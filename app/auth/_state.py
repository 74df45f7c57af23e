"""Per-application authentication state: the verified-credential cache and the JWKS client.

The cache maps a digest of a credential that passed full verification to its
principal, until the credential expires or `AUTH_CACHE_SECONDS` pass. It is
emptied when the auth epoch in Redis changes (a key was revoked anywhere) and
when the JWKS key set changes, so a revoked key or a removed signing key stops
working at once. Only successful verifications enter it: garbage cannot fill it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import current_app

from ._failures import FailureGate
from ._jwks import JWKSClient
from .principal import Principal

MAX_CACHED_PRINCIPALS = 10_000
_EXTENSION = "relay.auth"


class PrincipalCache:
    """digest -> (principal, expiry as epoch seconds, JWKS kid); bounded, oldest entries go first."""

    def __init__(self, ttl_s: float, max_entries: int = MAX_CACHED_PRINCIPALS) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[Principal, float, str | None]] = {}
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> tuple[Principal, str | None] | None:
        """The cached principal and the JWKS kid that verified it (None: not a JWKS token)."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[1] <= time.time():
            self._entries.pop(digest, None)
            return None
        return entry[0], entry[2]

    def put(self, digest: bytes, principal: Principal, expires_at: float | None = None, kid: str | None = None) -> None:
        if self.ttl_s <= 0:
            return
        until = time.time() + self.ttl_s
        if expires_at is not None:
            until = min(until, expires_at)
        with self._lock:
            while len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)), None)
            self._entries[digest] = (principal, until, kid)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class AuthState:
    """Built once per app, on first use; holds nothing secret beyond what config holds."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.cache = PrincipalCache(config["AUTH_CACHE_SECONDS"])
        self.gate = FailureGate(config["LIMIT_AUTH_FAILURES"], config["AUTH_CHECK_CACHE_SECONDS"])
        self.epoch: str | None = None
        self._epoch_read_at = float("-inf")
        self.jwks: JWKSClient | None = None
        if config["JWKS_URL"]:
            self.jwks = JWKSClient(
                config["JWKS_URL"],
                min_refresh_s=config["JWKS_MIN_REFRESH_SECONDS"],
                max_age_s=config["JWKS_CACHE_SECONDS"],
                timeout_s=config["JWKS_FETCH_TIMEOUT_SECONDS"],
                on_change=self.cache.clear,
            )

    def sync_epoch(self, epoch: str | None, read_at: float) -> None:
        """Forget every cached principal when another process changed credentials.

        Readings older than the last one applied are ignored, so remembered
        answers of different IPs never make the epoch flap.
        """
        if read_at < self._epoch_read_at:
            return
        self._epoch_read_at = read_at
        if epoch != self.epoch:
            self.cache.clear()
            self.epoch = epoch


def auth_state() -> AuthState:
    """The current app's state (created on first use)."""
    extensions = current_app.extensions
    state = extensions.get(_EXTENSION)
    if state is None:
        state = extensions.setdefault(_EXTENSION, AuthState(current_app.config))
    return state
