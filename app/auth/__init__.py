"""Authentication: the Authorization header becomes a Principal, or 401/403/429.

Credential kinds: user JWTs (`_user_jwt`, HS256 secret or JWKS), Relay's
anonymous tokens (`anonymous`) and API keys (`api_keys`). Routing between kinds
looks at the token's form only; each kind verifies with its own pinned key.

Order of one request: the client IP's auth_failures count is checked before
the token is even parsed; then a credential verified earlier is answered from
the per-process cache; otherwise it is verified in full.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import jwt
from flask import current_app, g, request

from .. import audit
from ..client_ip import client_ip
from ..errors import APIError, unauthorized, unavailable
from ..observability import AUTH_FAILURES, RATE_LIMIT_HITS, SECURITY_VIOLATIONS, endpoint_label
from ..principal import ANONYMOUS_SCOPES, ROLE_SCOPES, SCOPES, Principal
from . import _failures, _user_jwt, _users, anonymous, api_keys
from ._state import AuthState, auth_state
from ._verdicts import AuthFailure, insufficient_scope, invalid

__all__ = [
    "ANONYMOUS_SCOPES",
    "ROLE_SCOPES",
    "SCOPES",
    "Principal",
    "authenticate",
    "current_principal",
    "require_scopes",
]

MAX_TOKEN_BYTES = 8192
# Failures that prove nothing was guessed (the signature was valid) do not count toward the limit.
_NOT_COUNTED = frozenset({"expired"})
F = TypeVar("F", bound=Callable[..., Any])


def _bearer_token(header: str) -> str:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise invalid("not_bearer", message="The Authorization header must be: Bearer <token>.")
    if len(token) > MAX_TOKEN_BYTES:
        raise invalid("too_large")
    return token


def _verify(token: str) -> tuple[Principal, float | None, str | None]:
    """Full verification of one credential: its principal, expiry (epoch seconds) and JWKS kid."""
    config = current_app.config
    if api_keys.looks_like_key(token):
        return api_keys.verify(token, config), None, None
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise invalid("malformed") from None
    _user_jwt.check_header(header)  # every JWT kind: no crit, no key named by the token, a sane typ and kid
    if anonymous.is_anonymous_token(claims):
        try:
            return anonymous.verify(token, config["SECRET_KEY"], config["JWT_LEEWAY_SECONDS"]), claims["exp"], None
        except APIError as exc:
            reason = "expired" if exc.error_code == "token_expired" else "bad_anonymous_token"
            raise AuthFailure(exc, reason) from None
    verified, kid = _user_jwt.verify(token, claims, config, auth_state().jwks)
    principal = _user_jwt.supabase_anonymous(verified)
    if principal is None:
        principal, created = _users.resolve(verified, config)
        if created:
            audit.record_event(audit.USER_PROVISIONED, principal)
    return principal, verified["exp"], kid


def _cached(state: AuthState, digest: bytes) -> Principal | None:
    """A principal verified earlier, unless its JWKS key has since left the key set."""
    hit = state.cache.get(digest)
    if hit is None:
        return None
    principal, kid = hit
    if kid is not None and (state.jwks is None or state.jwks.key(kid) is None):
        return None
    return principal


def _record_failure(error: APIError, ip: str) -> None:
    reason = error.reason if isinstance(error, AuthFailure) else error.error_code
    AUTH_FAILURES.labels(reason, endpoint_label()).inc()
    if not isinstance(error, AuthFailure):
        return
    gate = auth_state().gate
    if error.code == 401 and reason not in _NOT_COUNTED:
        try:
            if gate.record(ip) == gate.allowed:
                audit.record_event(audit.RATE_LIMITED, None, {"limit": _failures.LIMIT_NAME})
        except _failures.REDIS_ERRORS:
            pass  # already refusing; the next request's preflight answers 503
    event = audit.AUTH_FAILURE if error.code == 401 else audit.USER_NOT_ALLOWED
    audit.record_event(
        event, None, {"reason": reason, "code": error.error_code, **error.audit}, tenant_id=error.tenant_id
    )


def authenticate() -> Principal:
    """The request's principal, or an APIError (401, 403 user_not_allowed, 429, 503)."""
    header = request.headers.get("Authorization", "")
    if not header:
        AUTH_FAILURES.labels("missing_token", endpoint_label()).inc()
        raise unauthorized("missing_token", "Send Authorization: Bearer <token>.")
    state, ip = auth_state(), client_ip()  # an IPv6 client's failures count against its /64
    try:
        state.sync_epoch(*state.gate.check(ip))
    except _failures.REDIS_ERRORS:
        state.cache.clear()  # revocations may have been missed while Redis was away
        raise unavailable("redis") from None
    except APIError:
        RATE_LIMIT_HITS.labels(_failures.LIMIT_NAME, endpoint_label()).inc()
        raise
    try:
        token = _bearer_token(header)
        digest = hashlib.sha256(token.encode()).digest()
        principal = _cached(state, digest)
        if principal is None:
            generation = state.cache.generation  # read before the credential is: see PrincipalCache.put
            principal, expires_at, kid = _verify(token)
            state.cache.put(digest, principal, expires_at, kid, generation)
    except APIError as exc:
        if exc.code in (401, 403):
            _record_failure(exc, ip)
        raise
    return principal


def current_principal() -> Principal:
    return g.principal


def _refused(principal: Principal, error: APIError) -> None:
    kind = audit.INSUFFICIENT_SCOPE if error.error_code == "insufficient_scope" else audit.FORBIDDEN
    SECURITY_VIOLATIONS.labels(kind, "medium").inc()
    audit.record_event(kind, principal, {"code": error.error_code, "message": error.description})


def require_scopes(*scopes: str) -> Callable[[F], F]:
    """Authenticate the request and demand every scope named; 403s are audited."""
    unknown = set(scopes) - SCOPES
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}")

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate()
            g.principal = principal
            if not principal.has_scopes(*scopes):
                error = insufficient_scope(scopes, "This credential lacks the scope this endpoint needs.")
                _refused(principal, error)
                raise error
            try:
                return view(*args, **kwargs)
            except APIError as exc:
                if exc.code == 403:
                    _refused(principal, exc)
                raise

        wrapper.required_scopes = frozenset(scopes)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
