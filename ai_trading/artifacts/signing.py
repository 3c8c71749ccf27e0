"""Signatures over manifest bytes: Ed25519 through PyNaCl (default) or HMAC-SHA256 (a shared secret for
single-tenant set-ups). A key id is a short hash of the public key (Ed25519) or of the secret (HMAC), never
the key itself."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ai_trading.errors import SignatureInvalid

ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"
ED25519_SIGNATURE_BYTES = 64
HMAC_SIGNATURE_BYTES = 32
HMAC_MIN_SECRET_BYTES = 32


def key_id(algorithm: str, material: bytes) -> str:
    """16 hex digits naming a key: SHA-256 over the algorithm and the public key (or the HMAC secret)."""
    return hashlib.sha256(algorithm.encode() + b":" + material).hexdigest()[:16]


@dataclass(frozen=True)
class Ed25519Signer:
    """Signs with an Ed25519 private key (its 32-byte seed). ``dev``: a local development key."""

    seed: bytes = field(repr=False)
    dev: bool = False
    algorithm: str = ED25519

    @property
    def public_key(self) -> bytes:
        return bytes(SigningKey(self.seed).verify_key)

    @property
    def key_id(self) -> str:
        return key_id(ED25519, self.public_key)

    def sign(self, data: bytes) -> bytes:
        return bytes(SigningKey(self.seed).sign(data).signature)


@dataclass(frozen=True)
class HmacSigner:
    """Signs with an HMAC-SHA256 shared secret (at least 32 bytes)."""

    secret: bytes = field(repr=False)
    dev: bool = False
    algorithm: str = HMAC_SHA256

    @property
    def key_id(self) -> str:
        return key_id(HMAC_SHA256, self.secret)

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self.secret, data, hashlib.sha256).digest()


Signer = Ed25519Signer | HmacSigner


def verify_ed25519(public_key: bytes, data: bytes, signature: bytes, where: str | None = None) -> None:
    """Raise :class:`SignatureInvalid` unless ``signature`` is a valid Ed25519 signature of ``data``."""
    if len(signature) != ED25519_SIGNATURE_BYTES:
        raise SignatureInvalid(f"an Ed25519 signature has {ED25519_SIGNATURE_BYTES} bytes, got {len(signature)}",
                               where=where)
    try:
        VerifyKey(public_key).verify(data, signature)
    except BadSignatureError:
        raise SignatureInvalid("Ed25519 signature does not verify over manifest.json", where=where) from None


def verify_hmac(secret: bytes, data: bytes, signature: bytes, where: str | None = None) -> None:
    """Raise :class:`SignatureInvalid` unless ``signature`` is the HMAC-SHA256 of ``data`` under ``secret``."""
    if len(signature) != HMAC_SIGNATURE_BYTES or not hmac.compare_digest(
            hmac.new(secret, data, hashlib.sha256).digest(), signature):
        raise SignatureInvalid("HMAC-SHA256 signature does not verify over manifest.json", where=where)
