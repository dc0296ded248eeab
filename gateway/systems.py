"""New secrets for connected systems (the random part of :mod:`gateway.core.credentials`)."""

from __future__ import annotations

import secrets

from gateway.core.credentials import hash_secret


def generate_secret() -> str:
    """256 random bits, URL-safe: what ``lienthong system add --generate-secret`` prints once."""
    return secrets.token_urlsafe(32)


def store_secret(secret: str) -> str:
    """The salted hash to store for ``secret`` (a fresh 16-byte salt each time)."""
    return hash_secret(secret, secrets.token_bytes(16))
