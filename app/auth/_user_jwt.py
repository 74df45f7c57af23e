"""User JWTs: HS256 with JWT_SECRET, RS256/ES256 with JWKS keys. Algorithms pinned per key source.

The token's header only chooses which configured key source to try; the key
source alone decides the one algorithm accepted. `none`, HS/RS confusion and
any algorithm not listed here are refused before a signature is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from ..errors import APIError
from ..observability import SECURITY_VIOLATIONS
from ..principal import Principal
from ._jwks import JWKSClient
from ._verdicts import invalid

HMAC_ALGORITHM = "HS256"
JWKS_ALGORITHMS = frozenset({"RS256", "ES256"})
# Supabase's project keys: signed like user tokens, never a user.
SUPABASE_KEY_ROLES = frozenset({"anon", "service_role"})
MAX_SUBJECT_CHARS = 255
MAX_KID_CHARS = 255
_KEY_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c"})
_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})  # lower case: RFC 7515 compares typ case-insensitively


def check_header(header: Mapping[str, Any]) -> None:
    """Refuse a JOSE header Relay does not fully understand, before any key is chosen (401).

    `crit` lists extensions a recipient must understand or reject (RFC 7515
    4.1.11): Relay understands none. `jku`, `x5u`, `jwk` and `x5c` name or carry
    the key to verify with: a token never chooses its own key, so their mere
    presence is refused. `typ`, when present, says JWT; `kid` is a short
    printable string.
    """
    if "crit" in header:
        raise invalid("unsupported_crit")
    if _KEY_HEADERS & header.keys():
        SECURITY_VIOLATIONS.labels("jwt_key_in_header", "high").inc()
        raise invalid("key_in_header")
    if "typ" in header and not (isinstance(header["typ"], str) and header["typ"].lower() in _TYPES):
        raise invalid("bad_typ")
    if "kid" in header and not _short_printable(header["kid"], MAX_KID_CHARS):
        raise invalid("bad_kid")


def _short_printable(value: Any, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()


def _one_of(value: Any, names: frozenset[str]) -> bool:
    """Membership that a list or an object in a token (unhashable) cannot turn into a 500."""
    return isinstance(value, str) and value in names


def _key_for(header: Mapping[str, Any], config: Mapping[str, Any], jwks: JWKSClient | None) -> tuple[Any, str]:
    algorithm = header.get("alg")
    if algorithm == HMAC_ALGORITHM and config["JWT_SECRET"]:
        return config["JWT_SECRET"], HMAC_ALGORITHM
    if _one_of(algorithm, JWKS_ALGORITHMS) and jwks is not None:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise invalid("missing_kid")
        found = jwks.key(kid)
        if found is None:
            if not jwks.has_keys:
                raise APIError(
                    503,
                    "dependency_unavailable",
                    "The identity provider's keys are unavailable; try again shortly.",
                    {"dependency": "jwks"},
                    {"Retry-After": str(max(1, int(config["JWKS_MIN_REFRESH_SECONDS"])))},
                )
            raise invalid("unknown_kid")
        key, pinned = found
        if algorithm != pinned:
            raise invalid("algorithm_not_allowed")
        return key, pinned
    if not isinstance(algorithm, str) or algorithm.lower() == "none" or algorithm.startswith("HS"):
        SECURITY_VIOLATIONS.labels("jwt_algorithm", "high").inc()
    raise invalid("algorithm_not_allowed")


def verify(
    token: str, claims: Mapping[str, Any], config: Mapping[str, Any], jwks: JWKSClient | None
) -> tuple[dict[str, Any], str | None]:
    """The verified claims of a user JWT and the JWKS kid used (None: HS256), or 401.

    `claims` are the unverified ones, used for routing and early refusals only.
    """
    if _one_of(claims.get("role"), SUPABASE_KEY_ROLES):
        raise invalid("supabase_project_key")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise invalid("malformed") from None
    key, algorithm = _key_for(header, config, jwks)
    required = (
        ["exp", "iat", "sub"] + (["aud"] if config["JWT_AUDIENCE"] else []) + (["iss"] if config["JWT_ISSUER"] else [])
    )
    try:
        verified = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=config["JWT_AUDIENCE"] or None,
            issuer=config["JWT_ISSUER"] or None,
            leeway=config["JWT_LEEWAY_SECONDS"],
            options={"require": required, "verify_signature": True},
        )
    except jwt.ExpiredSignatureError:
        raise invalid("expired", code="token_expired", message="The token has expired.") from None
    except jwt.InvalidSignatureError:
        raise invalid("bad_signature") from None
    except jwt.InvalidTokenError:
        raise invalid("bad_claims") from None
    if not _short_printable(verified.get("sub"), MAX_SUBJECT_CHARS):
        raise invalid("bad_claims")
    if _one_of(verified.get("role"), SUPABASE_KEY_ROLES):
        raise invalid("supabase_project_key")
    return verified, (header["kid"] if algorithm in JWKS_ALGORITHMS else None)


def supabase_anonymous(claims: Mapping[str, Any]) -> Principal | None:
    """A verified Supabase anonymous sign-in is an anonymous principal (chat only)."""
    if claims.get("is_anonymous") is not True:
        return None
    # Namespaced so an identity provider's subject can never equal a Relay anonymous token's.
    return Principal.anonymous(f"anon:idp:{claims['sub']}", claims["sub"])
