"""Anonymous session tokens: HS256 JWTs signed with a key derived from SECRET_KEY.

They carry their own issuer and audience and claim `anon: true`, so they can
never pass as user JWTs (which use JWT_SECRET or JWKS keys) or the reverse.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import jwt

from ..errors import unauthorized
from ..principal import Principal

ISSUER = "relay"
AUDIENCE = "relay:anonymous"
ALGORITHM = "HS256"


def _signing_key(secret_key: str) -> bytes:
    # A derived key: the anonymous-token key is never the raw SECRET_KEY.
    return hmac.new(secret_key.encode(), b"relay.anonymous-token.v1", hashlib.sha256).digest()


def mint(secret_key: str, ttl_seconds: int, now: float | None = None) -> tuple[str, int]:
    """A new anonymous token and its expiry (epoch seconds)."""
    issued = int(now if now is not None else time.time())
    expires = issued + ttl_seconds
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "anon_" + secrets.token_urlsafe(18),
        "anon": True,
        "iat": issued,
        "exp": expires,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, _signing_key(secret_key), algorithm=ALGORITHM), expires


def is_anonymous_token(unverified_claims: dict) -> bool:
    """Routing only: the token claims our issuer; verification decides."""
    return unverified_claims.get("iss") == ISSUER and unverified_claims.get("aud") == AUDIENCE


def verify(token: str, secret_key: str, leeway: int) -> Principal:
    """The anonymous principal of a valid token, or 401."""
    try:
        claims = jwt.decode(
            token,
            _signing_key(secret_key),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=leeway,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("token_expired", "The token has expired.") from None
    except jwt.InvalidTokenError:
        raise unauthorized("invalid_token", "The token is invalid.") from None
    if claims.get("anon") is not True or not str(claims["sub"]).startswith("anon_"):
        raise unauthorized("invalid_token", "The token is invalid.")
    return Principal.anonymous(f"anon:{claims['sub']}", claims["sub"])
