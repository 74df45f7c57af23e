"""No response, log line or audit event ever contains a token, a key or a secret."""

from __future__ import annotations

import logging
import time

import jwt
from sqlalchemy import text

from app.extensions import database
from tests.auth.helpers import claims, forge
from tests.conftest import bearer

PROTECTED = "/api/v1/conversations"


def test_credentials_never_echo(make_app, base_env, caplog, user_a_headers, key_server, rsa_key):
    key_server.publish(rsa_key)
    app = make_app(JWKS_URL=key_server.url, LIMIT_AUTH_FAILURES="0")
    client = app.test_client()
    created = client.post("/api/v1/api_keys", json={"name": "k", "scopes": ["chat"]}, headers=user_a_headers)
    key = created.get_json()["key"]
    old = int(time.time()) - 3600
    secret = base_env["JWT_SECRET"]
    credentials = [
        key,
        "relay_sk_" + "Z" * 43,
        jwt.encode(claims(), "wrong-secret-" + "x" * 40, algorithm="HS256"),
        jwt.encode(claims(iat=old, exp=old + 1), secret, algorithm="HS256"),
        forge({"alg": "none"}, claims()),
        rsa_key.sign(claims(), kid="unknown-kid"),
        user_a_headers["Authorization"].split()[1],
        "eyJ" + "Q" * 9000,
    ]
    caplog.set_level(logging.DEBUG)
    bodies = []
    for credential in credentials:
        for path in (PROTECTED, "/admin/audit", "/api/v1/api_keys"):
            response = client.get(path, headers=bearer(credential))
            bodies.append(response.get_data(as_text=True) + str(dict(response.headers)))
    with database.session() as session:
        audit_rows = str(session.execute(text("SELECT * FROM audit_events")).all())
    seen = "\n".join([caplog.text, *bodies, audit_rows])
    for credential in credentials:
        signature = credential.rsplit(".", 1)[-1] if "." in credential else credential[9:]
        assert credential not in seen
        assert len(signature) < 8 or signature not in seen
    for value in (secret, app.config["SECRET_KEY"]):
        assert value not in seen
