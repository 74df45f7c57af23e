"""Standard Webhooks signatures both ways, against the official `standardwebhooks` package."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.webhooks import _crypto
from app.webhooks.signing import LEGACY_HEADER, VerificationError, sign_headers, verify

BODY = b'{"type":"action.result","data":{"ok":true}}'


def _verify(headers, body=BODY, secrets=(), **options):
    return verify(headers, body, list(secrets), now=options.pop("now", int(time.time())), tolerance=300, **options)


def test_new_secrets_are_whsec_with_32_random_bytes():
    first, second = _crypto.new_secret(), _crypto.new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def test_our_signatures_verify_with_the_official_package_for_each_secret_of_a_rotation():
    old, new = _crypto.new_secret(), _crypto.new_secret()
    keys = [_crypto.secret_bytes(new), _crypto.secret_bytes(old)]
    headers = sign_headers(keys, "msg_abc", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(BODY, headers) is not None
    with pytest.raises(WebhookVerificationError):
        Webhook(_crypto.new_secret()).verify(BODY, headers)


def test_the_official_packages_signatures_verify_here():
    secret = _crypto.new_secret()
    now = int(time.time())
    signed = Webhook(secret).sign("msg_1", datetime.fromtimestamp(now, UTC), BODY.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": signed}
    verified = _verify(headers, secrets=[_crypto.new_secret(), secret])  # any configured secret
    assert verified.webhook_id == "msg_1" and verified.timestamp == now


@pytest.mark.parametrize(
    ("change", "code", "reason"),
    [
        ({"webhook-signature": None}, "missing_signature", "incomplete_headers"),
        ({"webhook-id": None, "webhook-timestamp": None, "webhook-signature": None}, "missing_signature", "no_headers"),
        ({"webhook-signature": "v1,AAAA"}, "invalid_signature", "mismatch"),
        ({"webhook-signature": "v2,whatever"}, "invalid_signature", "mismatch"),
        ({"webhook-timestamp": "12x"}, "invalid_signature", "malformed_timestamp"),
        ({"webhook-id": "has space"}, "invalid_signature", "malformed_id"),
    ],
)
def test_malformed_or_incomplete_headers_are_refused(change, code, reason):
    secret = _crypto.new_secret()
    headers = sign_headers([_crypto.secret_bytes(secret)], "msg_1", int(time.time()), BODY)
    for name, value in change.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    with pytest.raises(VerificationError) as refused:
        _verify(headers, secrets=[secret])
    assert (refused.value.code, refused.value.reason) == (code, reason)


def test_staleness_is_judged_after_the_signature():
    secret = _crypto.new_secret()
    old = int(time.time()) - 360
    headers = sign_headers([_crypto.secret_bytes(secret)], "msg_1", old, BODY)
    with pytest.raises(VerificationError) as refused:
        _verify(headers, secrets=[secret])
    assert refused.value.code == "stale_timestamp"
    headers["webhook-signature"] = headers["webhook-signature"][:-4] + "AAA="
    with pytest.raises(VerificationError) as forged:
        _verify(headers, secrets=[secret])
    assert forged.value.code == "invalid_signature"


def test_legacy_hex_signature_only_when_enabled():
    secret = _crypto.new_secret()
    legacy = {LEGACY_HEADER: hmac.new(_crypto.secret_bytes(secret), BODY, hashlib.sha256).hexdigest()}
    with pytest.raises(VerificationError) as refused:
        _verify(legacy, secrets=[secret])
    assert (refused.value.code, refused.value.reason) == ("missing_signature", "legacy_disabled")
    verified = _verify(legacy, secrets=[secret], accept_legacy=True)
    assert verified.legacy and verified.webhook_id.startswith("legacy_")
    with pytest.raises(VerificationError):
        _verify(legacy, body=BODY + b" ", secrets=[secret], accept_legacy=True)


def test_secrets_are_encrypted_bound_to_their_row_and_key():
    secret = _crypto.new_secret()
    stored = _crypto.encrypt("k" * 48, secret, "row-1")
    assert secret not in stored and secret.removeprefix("whsec_") not in stored
    assert _crypto.decrypt("k" * 48, stored, "row-1") == secret
    for key, row in (("x" * 48, "row-1"), ("k" * 48, "row-2")):
        with pytest.raises(_crypto.SecretError):
            _crypto.decrypt(key, stored, row)
