"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.

Outbound: one signature per valid secret, space-separated, so a receiver that
has either the old or the new secret of a rotation verifies. Inbound: the
signature header may carry several; any of them matching any configured
secret is enough. Every comparison is constant-time. The legacy scheme (a hex
HMAC of the body alone, `X-Webhook-Signature`) has no id and no timestamp, so
a captured request replays forever: it is honoured only when explicitly enabled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._crypto import secret_bytes

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
LEGACY_HEADER = "X-Webhook-Signature"

MAX_ID_CHARS = 256
MAX_SIGNATURES = 10  # bounds the work an attacker can ask for with one request
_ID = re.compile(r"^[\x21-\x7e]{1,256}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class VerificationError(Exception):
    """A request that must be refused: `code` is the API's, `reason` is for the audit log."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    webhook_id: str
    timestamp: int | None  # None for a legacy request
    legacy: bool = False


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign_headers(keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every key given (current first)."""
    return {
        ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(signature(key, webhook_id, timestamp, body) for key in keys),
    }


def _matches(keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes, header: str) -> bool:
    offered = [part.partition(",") for part in header.split()[:MAX_SIGNATURES]]
    candidates = [value.encode() for version, _, value in offered if version == "v1" and value]
    found = False
    for key in keys:
        expected = signature(key, webhook_id, timestamp, body).partition(",")[2].encode()
        for candidate in candidates:
            found |= hmac.compare_digest(expected, candidate)  # no early exit: time does not tell which matched
    return found


def _legacy(keys: Sequence[bytes], body: bytes, header: str) -> Verified:
    if not _HEX.match(header.strip()):
        raise VerificationError("invalid_signature", "legacy_malformed")
    offered = header.strip().lower().encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest().encode(), offered)
    if not found:
        raise VerificationError("invalid_signature", "legacy_mismatch")
    return Verified("legacy_" + hashlib.sha256(body).hexdigest()[:32], None, legacy=True)


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: int,
    tolerance: int,
    accept_legacy: bool = False,
) -> Verified:
    """Check a request's signature and timestamp; VerificationError names the refusal."""
    keys = [secret_bytes(secret) for secret in secrets]
    webhook_id = headers.get(ID_HEADER)
    raw_timestamp = headers.get(TIMESTAMP_HEADER)
    offered = headers.get(SIGNATURE_HEADER)
    if webhook_id is None and raw_timestamp is None and offered is None:
        legacy = headers.get(LEGACY_HEADER)
        if legacy is None:
            raise VerificationError("missing_signature", "no_headers")
        if not accept_legacy:
            raise VerificationError("missing_signature", "legacy_disabled")
        return _legacy(keys, body, legacy)
    if not webhook_id or not raw_timestamp or not offered:
        raise VerificationError("missing_signature", "incomplete_headers")
    if not _ID.match(webhook_id):
        raise VerificationError("invalid_signature", "malformed_id")
    if not _TIMESTAMP.match(raw_timestamp.strip()):
        raise VerificationError("invalid_signature", "malformed_timestamp")
    timestamp = int(raw_timestamp)
    if not _matches(keys, webhook_id, timestamp, body, offered):
        raise VerificationError("invalid_signature", "mismatch")
    # Checked after the signature: a stale refusal then always means a genuine but old (replayed) message.
    if abs(now - timestamp) > tolerance:
        raise VerificationError("stale_timestamp", "too_old" if timestamp < now else "too_new")
    return Verified(webhook_id, timestamp)
