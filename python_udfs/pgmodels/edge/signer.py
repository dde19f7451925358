"""The server's Ed25519 signer: the ``cryptography`` package (OpenSSL, constant time)
when installed (pyproject.toml depends on it), else the device package's pure-Python
Ed25519, which gives the same signatures (Ed25519 is deterministic) but is not constant
time."""

from __future__ import annotations

from ..errors import FEATURE_NOT_SUPPORTED, PgmodelsError


class _Cryptography:
    """Ed25519 from the ``cryptography`` package (OpenSSL: constant time), preferred."""

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
    """The signer: the ``cryptography`` package (constant time) when installed, else the
    device package's pure-Python Ed25519 (same signatures: Ed25519 is deterministic, but
    not constant time, so a server without ``cryptography`` leaks timing)."""
    try:
        return _Cryptography()
    except ImportError:
        pass
    try:
        from pgmodels_edge import ed25519
    except ImportError:
        raise PgmodelsError("the pgmodels-edge package is not installed in the server's Python environment",
                            detail="Edge bundles are signed with its Ed25519 code.",
                            hint="Install edge/python into the environment pgmodels.venv names "
                                 "(scripts/install.sh does).", sqlstate=FEATURE_NOT_SUPPORTED) from None
    return ed25519
