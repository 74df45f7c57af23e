"""Authentication: the Authorization header becomes a Principal, or 401/403.

Credential kinds: anonymous session tokens (here), user JWTs and API keys
(added beside them in `_user_jwt` and `_api_keys`). Routing between kinds
looks at the token's form only; each kind verifies with its own pinned key.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import jwt
from flask import current_app, g, request

from ..errors import APIError, unauthorized
from . import anonymous
from .principal import ANONYMOUS_SCOPES, ROLE_SCOPES, SCOPES, Principal

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
F = TypeVar("F", bound=Callable[..., Any])


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise unauthorized("missing_token", "Send Authorization: Bearer <token>.")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("invalid_token", "The Authorization header must be: Bearer <token>.")
    if len(token) > MAX_TOKEN_BYTES:
        raise unauthorized("invalid_token", "The token is invalid.")
    return token


def authenticate() -> Principal:
    """The request's principal, or an APIError (401/403)."""
    token = _bearer_token()
    config = current_app.config
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise unauthorized("invalid_token", "The token is invalid.") from None
    if anonymous.is_anonymous_token(claims):
        return anonymous.verify(token, config["SECRET_KEY"], config["JWT_LEEWAY_SECONDS"])
    raise unauthorized("invalid_token", "The token is invalid.")


def current_principal() -> Principal:
    return g.principal


def require_scopes(*scopes: str) -> Callable[[F], F]:
    """Authenticate the request and demand every scope named."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate()
            if not principal.has_scopes(*scopes):
                raise APIError(
                    403,
                    "insufficient_scope",
                    "This credential lacks the scope this endpoint needs.",
                    {"required": sorted(scopes)},
                )
            g.principal = principal
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
