"""Authentication failures: the contract's 401/403 plus what only metrics and the audit log see.

`reason` is a bounded internal label (metrics, audit); the response shows only
the contract's code and a message that never says which check failed where
that would help an attacker (an unknown and a revoked key look the same).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import APIError, unauthorized

INVALID_TOKEN_MESSAGE = "The token is invalid."  # noqa: S105 - a message, not a secret
INVALID_KEY_MESSAGE = "The API key is invalid."


class AuthFailure(APIError):
    """An APIError that also carries the failure's reason and, when known, its tenant."""

    def __init__(
        self,
        error: APIError,
        reason: str,
        tenant_id: str | None = None,
        audit: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            error.code or 401, error.error_code, error.description or "", error.details, error.extra_headers
        )
        self.reason = reason
        self.tenant_id = tenant_id
        self.audit = audit or {}


def invalid(
    reason: str,
    *,
    code: str = "invalid_token",
    message: str = INVALID_TOKEN_MESSAGE,
    tenant_id: str | None = None,
    **audit: Any,
) -> AuthFailure:
    """401 with the RFC 6750 challenge."""
    return AuthFailure(unauthorized(code, message), reason, tenant_id, audit)


def not_allowed(reason: str, tenant_id: str | None = None, **audit: Any) -> AuthFailure:
    """403 user_not_allowed: a valid token of someone Relay does not admit."""
    error = APIError(403, "user_not_allowed", "This user is not allowed to use this service.")
    return AuthFailure(error, reason, tenant_id, audit)


def insufficient_scope(required: Iterable[str], message: str) -> APIError:
    """403 insufficient_scope, with the RFC 6750 challenge naming the scopes required."""
    names = sorted(required)
    challenge = f'Bearer realm="relay", error="insufficient_scope", scope="{" ".join(names)}"'
    return APIError(403, "insufficient_scope", message, {"required": names}, {"WWW-Authenticate": challenge})
