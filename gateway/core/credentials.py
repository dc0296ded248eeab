"""Secrets of connected systems: hashed with a salt, checked in constant time.

Secrets are long random strings (``gateway.systems.generate_secret``, 256 bits), so a single salted
SHA-256 is as strong as a slow password hash would be and keeps the check per request cheap
(microseconds). Secrets an operator supplies must be at least :data:`MIN_SECRET_LENGTH` characters for the
same reason. Randomness comes from the caller (this package reads no operating-system state).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

MIN_SECRET_LENGTH = 32
_SCHEME = "sha256"


def hash_secret(secret: str, salt: bytes) -> str:
    """``sha256$<salt hex>$<digest hex>``; the clear secret is never stored."""
    if len(salt) < 16:
        raise ValueError("the salt must be at least 16 random bytes")
    digest = hashlib.sha256(salt + secret.encode("utf-8")).hexdigest()
    return f"{_SCHEME}${salt.hex()}${digest}"


def check_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != _SCHEME:
        return False
    candidate = hashlib.sha256(salt + secret.encode("utf-8")).hexdigest()
    return hmac.compare_digest(candidate, digest)


@dataclasses.dataclass(frozen=True)
class UsernameToken:
    """A WS-Security UsernameToken (PasswordText) as the guard found it in the request header."""

    username: str
    password: str = dataclasses.field(repr=False)
