"""The server's Ed25519 signer: the ``cryptography`` package (OpenSSL, constant time),
which pyproject.toml depends on."""

from __future__ import annotations


class _Cryptography:
    """Ed25519 from the ``cryptography`` package."""

    name = "cryptography"

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._key, self._raw = Ed25519PrivateKey, (Encoding.Raw, PublicFormat.Raw)

    def public_key(self, seed: bytes) -> bytes:
        return self._key.from_private_bytes(bytes(seed)).public_key().public_bytes(*self._raw)

    def sign(self, seed: bytes, message: bytes) -> bytes:
        return self._key.from_private_bytes(bytes(seed)).sign(message)


def ed25519():
    """The signer."""
    return _Cryptography()
