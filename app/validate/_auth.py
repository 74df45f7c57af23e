"""Authentication checks: the challenge, an anonymous token, invalid and expired tokens."""

from __future__ import annotations

import secrets
import time

import jwt

from ._target import FAIL, PASS, Result, Target, bearer, seen


def check_auth_required(target: Target) -> Result:
    """No credentials: 401 with the bare challenge `Bearer realm="relay"` (RFC 6750 3.1)."""
    answered = []
    for method, path in (("GET", "/api/v1/conversations"), ("POST", "/api/v1/stream")):
        response = target.request(method, path, json={"message": "hi"} if method == "POST" else None)
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or challenge.strip() != 'Bearer realm="relay"':
            return Result("auth_required", FAIL, f"{method} {path}: {seen(response)}, WWW-Authenticate: {challenge!r}")
        answered.append(f"{method} {path} 401")
    return Result("auth_required", PASS, f'{", ".join(answered)}, WWW-Authenticate: Bearer realm="relay"')


def check_anon_token(target: Target) -> Result:
    """POST /api/v1/anon_session mints a Bearer token."""
    response = target.request("POST", "/api/v1/anon_session", json={"ttl_seconds": 600})
    body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
    if response.status_code != 200 or not body.get("token") or body.get("token_type") != "Bearer":
        return Result("anon_token", FAIL, f"POST /api/v1/anon_session: {seen(response)}")
    target.anon_token = body["token"]
    return Result("anon_token", PASS, f"200, token_type Bearer, expires_in {body.get('expires_in')} s")


def _refused_as_invalid(target: Target, token: str) -> str | None:
    """None when the token gets 401 with `error="invalid_token"`, else what was seen."""
    response = target.request("GET", "/api/v1/conversations", headers=bearer(token))
    challenge = response.headers.get("WWW-Authenticate", "")
    if response.status_code == 401 and 'error="invalid_token"' in challenge:
        return None
    return f"{seen(response)}, WWW-Authenticate: {challenge!r}"


def check_invalid_token(target: Target) -> Result:
    """Garbage and a tampered signature: 401 with `error="invalid_token"`."""
    tokens = {"garbage": "not-a-token"}
    if target.anon_token:
        head, _, signature = target.anon_token.rpartition(".")
        tokens["tampered"] = f"{head}.{signature[::-1]}"
    for kind, token in tokens.items():
        problem = _refused_as_invalid(target, token)
        if problem:
            return Result("invalid_token", FAIL, f"{kind} token: {problem}")
    return Result("invalid_token", PASS, f'{" and ".join(tokens)} token: 401, error="invalid_token"')


def check_expired_token(target: Target) -> Result:
    """A JWT that expired an hour ago (signed with a random key: the validator has no secret): 401."""
    now = int(time.time())
    claims = {"sub": "relay-validate", "aud": "authenticated", "iat": now - 7200, "exp": now - 3600}
    token = jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256")
    problem = _refused_as_invalid(target, token)
    if problem:
        return Result("expired_token", FAIL, problem)
    return Result("expired_token", PASS, '401, error="invalid_token"')
