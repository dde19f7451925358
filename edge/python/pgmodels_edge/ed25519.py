"""Ed25519 signature checks for devices, by the ``cryptography`` package (OpenSSL:
maintained and constant time). A device verifies; only the server signs."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether signature is public's signature of message."""
    if len(public) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public)).verify(bytes(signature), bytes(message))
    except (InvalidSignature, ValueError):
        return False
    return True
