"""Action secrets: `whsec_` values, and their encryption at rest under a key derived from SECRET_KEY.

A database dump alone cannot sign a webhook: each secret is stored as AES-256-GCM
ciphertext under a key that HKDF derives from SECRET_KEY (never SECRET_KEY
itself), and the row's id is the associated data, so a ciphertext copied onto
another action's row does not decrypt.
"""

from __future__ import annotations

import base64
import os
import secrets as _random

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks recommends 24 to 64 random bytes
_VERSION = "v1"
_NONCE_BYTES = 12
_INFO = b"relay.action-secret.v1"


class SecretError(ValueError):
    """A stored secret does not decrypt (SECRET_KEY changed, or the row was tampered with)."""


def new_secret() -> str:
    """A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a secret: the decoded bytes of a `whsec_` value, else the value's UTF-8 bytes."""
    if secret.startswith(PREFIX):
        text = secret.removeprefix(PREFIX)
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)  # padding is optional
    return secret.encode()


def _key(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return hkdf.derive(secret_key.encode())


def encrypt(secret_key: str, secret: str, bound_to: str) -> str:
    """The secret's ciphertext, bound to the row id `bound_to`."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_key(secret_key)).encrypt(nonce, secret.encode(), bound_to.encode())
    return f"{_VERSION}:" + base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt(secret_key: str, stored: str, bound_to: str) -> str:
    """The secret back from `encrypt`; SecretError when the key, the row or the text is wrong."""
    version, _, text = stored.partition(":")
    if version != _VERSION:
        raise SecretError("unknown secret format")
    try:
        raw = base64.urlsafe_b64decode(text.encode())
        plain = AESGCM(_key(secret_key)).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], bound_to.encode())
    except (InvalidTag, ValueError) as exc:
        raise SecretError("the stored secret does not decrypt with this SECRET_KEY") from exc
    return plain.decode()
