"""Per-application authentication state: the verified-credential cache and the JWKS client.

The cache maps a digest of a credential that passed full verification to its
principal, until the credential expires or `AUTH_CACHE_SECONDS` pass. It is
emptied when the auth epoch in Redis changes (a key was revoked anywhere) and
when the JWKS key set changes, so a revoked key or a removed signing key stops
working at once; a verification that started before such a change never
stores its answer after it. Only successful verifications enter it: garbage
cannot fill it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import current_app

from ..principal import Principal
from ._failures import FailureGate
from ._jwks import JWKSClient

MAX_CACHED_PRINCIPALS = 10_000
EXTENSION = "relay.auth"  # the app.extensions entry holding the AuthState


class PrincipalCache:
    """digest -> (principal, expiry as epoch seconds, JWKS kid); bounded, oldest entries go first."""

    def __init__(self, ttl_s: float, max_entries: int = MAX_CACHED_PRINCIPALS) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[Principal, float, str | None]] = {}
        self._lock = threading.Lock()
        self.generation = 0  # bumped by every clear()

    def get(self, digest: bytes) -> tuple[Principal, str | None] | None:
        """The cached principal and the JWKS kid that verified it (None: not a JWKS token)."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[1] <= time.time():
            self._entries.pop(digest, None)
            return None
        return entry[0], entry[2]

    def put(
        self,
        digest: bytes,
        principal: Principal,
        expires_at: float | None = None,
        kid: str | None = None,
        generation: int | None = None,
    ) -> None:
        """Remember a verified principal, unless the cache was cleared since `generation` was read.

        A verification reads the credential (database, key set) before it stores
        its answer; a revocation seen in between clears the cache, and an entry
        stored after that clear would bring the revoked credential back for
        AUTH_CACHE_SECONDS. So the caller reads `generation` before verifying.
        """
        if self.ttl_s <= 0:
            return
        until = time.time() + self.ttl_s
        if expires_at is not None:
            until = min(until, expires_at)
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            while len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)), None)
            self._entries[digest] = (principal, until, kid)

    def clear(self) -> None:
        """Forget every entry; verifications under way will not store theirs."""
        with self._lock:
            self._entries.clear()
            self.generation += 1


class AuthState:
    """Built once per app, on first use; holds nothing secret beyond what config holds.

    `clock` (monotonic seconds) times the JWKS refresh; tests pass their own.
    """

    def __init__(self, config: Mapping[str, Any], clock: Callable[[], float] = time.monotonic) -> None:
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
                clock=clock,
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
    state = extensions.get(EXTENSION)
    if state is None:
        state = extensions.setdefault(EXTENSION, AuthState(current_app.config))
    return state
