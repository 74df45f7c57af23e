"""A small JWKS client: cached keys, rate-limited refetch, last good keys kept.

Only `JWKS_URL` is ever fetched: nothing in a token (`kid`, `jku`, `x5u`,
`jwk`) names a URL or a file. A `kid` is only a key into the cached set.
Algorithms are pinned per key: RSA keys verify RS256, P-256 keys ES256, and
every other key type (symmetric `oct` keys above all) is ignored.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.error import URLError
from urllib.parse import urlparse

from jwt import PyJWK
from jwt.exceptions import PyJWTError

log = logging.getLogger("relay.auth.jwks")

MAX_JWKS_BYTES = 256 * 1024  # a key set is a few KiB; refuse to buffer more
MIN_RSA_BITS = 2048
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_PINNED = {("RSA", None): "RS256", ("EC", "P-256"): "ES256"}


class JWKSFetchError(Exception):
    """The key set could not be fetched or held no usable key."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is a failed fetch, never a new place to read keys from


def _acceptable_url(url: str) -> bool:
    parts = urlparse(url)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)


def parse_jwks(document: Any) -> dict[str, tuple[PyJWK, str]]:
    """kid -> (key, its one algorithm) for the usable signing keys of a JWKS document."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JWKSFetchError("not a JWKS document")
    keys: dict[str, tuple[PyJWK, str]] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid, kty, crv = entry.get("kid"), entry.get("kty"), entry.get("crv") if entry.get("kty") == "EC" else None
        if not isinstance(kty, str) or not isinstance(crv, str | None):
            continue
        algorithm = _PINNED.get((kty, crv))
        if not isinstance(kid, str) or not kid or algorithm is None or entry.get("alg", algorithm) != algorithm:
            continue
        try:
            key = PyJWK(entry, algorithm=algorithm)
        except (PyJWTError, ValueError, TypeError):
            continue
        if kty == "RSA" and key.key.key_size < MIN_RSA_BITS:
            continue
        keys[kid] = (key, algorithm)
    if not keys:
        raise JWKSFetchError("no usable signing key")
    return keys


class JWKSClient:
    """Per process: `key(kid)` answers from the cache and refetches at most once per interval."""

    def __init__(
        self,
        url: str,
        min_refresh_s: float,
        max_age_s: float,
        timeout_s: float,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.min_refresh_s = min_refresh_s
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self._on_change = on_change
        self._clock = clock
        self._keys: dict[str, tuple[PyJWK, str]] = {}
        self._fingerprint = ""
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._lock = threading.Lock()

    @property
    def has_keys(self) -> bool:
        return bool(self._keys)

    def key(self, kid: str) -> tuple[PyJWK, str] | None:
        """The key and algorithm for `kid`, or None when the (refreshed) set lacks it."""
        found = self._keys.get(kid)
        fresh = self._fetched_at is not None and self._clock() - self._fetched_at < self.max_age_s
        if found is not None and fresh:
            return found
        # A known key past its age is refreshed by one caller; the others keep using it meanwhile.
        if self._lock.acquire(blocking=found is None):
            try:
                self._refresh_locked()
            finally:
                self._lock.release()
        return self._keys.get(kid)

    def _refresh_locked(self) -> None:
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < self.min_refresh_s:
            return
        self._attempted_at = now
        try:
            document = self._fetch()
            keys = parse_jwks(document)
        except JWKSFetchError as exc:
            log.warning("JWKS fetch failed (%s); keeping %d cached keys", exc, len(self._keys))
            return
        fingerprint = json.dumps(document, sort_keys=True)
        changed = fingerprint != self._fingerprint
        self._keys, self._fingerprint, self._fetched_at = keys, fingerprint, self._clock()
        if changed and self._on_change is not None:
            self._on_change()  # tokens verified with a key that left the set must be verified again

    def _fetch(self) -> Any:
        if not _acceptable_url(self.url):
            raise JWKSFetchError("JWKS_URL must be https (plain http only on loopback)")
        opener = urllib.request.build_opener(_NoRedirects())
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})  # noqa: S310 - checked above
        try:
            with opener.open(request, timeout=self.timeout_s) as response:
                body = response.read(MAX_JWKS_BYTES + 1)
        except (URLError, OSError, http.client.HTTPException) as exc:
            raise JWKSFetchError(type(exc).__name__) from None
        if len(body) > MAX_JWKS_BYTES:
            raise JWKSFetchError("response too large")
        try:
            return json.loads(body)
        except ValueError:
            raise JWKSFetchError("response is not JSON") from None
