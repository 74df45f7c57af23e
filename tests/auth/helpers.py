"""Helpers of the auth tests: hand-made tokens, identity-provider keys, a local JWKS server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support import free_port


def assert_error(response, status: int, code: str) -> dict[str, Any]:
    """The exact status and code, in the contract's error shape; 401s carry the RFC 6750 challenge.

    A 401 for missing credentials challenges with the realm alone; any other 401 names invalid_token.
    """
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code, error
    if status == 401 and code == "missing_token":  # no credentials sent: no error= (RFC 6750 section 3.1)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="relay"'
    elif status == 401:
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="relay", error="invalid_token"')
    return error


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None = None, signature: str = "") -> str:
    """A JWT built by hand (PyJWT refuses to make most of these): HMAC-SHA256 over it when a key is given."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    if hmac_key is not None:
        signature = b64url(hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest())
    return f"{signing_input}.{signature}"


def claims(sub: str = "attacker-target", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "aud": "authenticated", "role": "authenticated", "iat": now, "exp": now + 600, **overrides}


class SigningKey:
    """An asymmetric key of an identity provider: signs tokens, publishes its public JWK."""

    def __init__(self, kind: str = "RSA", kid: str | None = None) -> None:
        self.kind = kind
        self.kid = kid or f"{kind.lower()}-{secrets.token_hex(4)}"
        if kind == "RSA":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.algorithm = "RS256"
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.algorithm = "ES256"

    def jwk(self) -> dict[str, Any]:
        codec = RSAAlgorithm if self.kind == "RSA" else ECAlgorithm
        public = codec.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, payload: dict[str, Any], **headers: Any) -> str:
        headers = {"kid": self.kid, **headers}
        return jwt.encode(payload, self.private, algorithm=self.algorithm, headers=headers)


class KeyServer:
    """A real HTTP server on loopback that serves a JWKS document and counts fetches."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.fetches = 0
        self.paths: list[str] = []
        self.redirect_to: str | None = None
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def publish(self, *keys: SigningKey, extra: list[dict[str, Any]] | None = None) -> None:
        self.document = {"keys": [key.jwk() for key in keys] + (extra or [])}

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner.fetches += 1
                owner.paths.append(self.path)
                if owner.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", owner.redirect_to)
                    self.end_headers()
                    return
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down for real: the listening socket is closed, connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
