"""Signing keys and the trusted keyring.

- The private Ed25519 key is the file named by ``AI_TRADING_SIGNING_KEY`` (base64 of the 32-byte seed, as
  ``python -m ai_trading.keys generate`` writes it); the HMAC-SHA256 secret is the value of
  ``AI_TRADING_HMAC_KEY`` (at least 32 bytes). Neither is ever read from a config, nor written to a log,
  param, tag or artifact.
- Without ``AI_TRADING_SIGNING_KEY`` a local development key pair is made on first use under
  ``$AI_TRADING_HOME/keys`` (``AI_TRADING_HOME`` defaults to ``~/.config/ai_trading``), one log line says so,
  and its public key is added to the local keyring marked ``dev``; ``signing.refuse_dev_keys`` refuses such
  keys for signing and verifying.
- The keyring ``$AI_TRADING_HOME/keyring.json`` maps key id -> public key (base64), label and dev flag; only
  keys in it verify Ed25519 manifests. An HMAC manifest verifies with the secret in ``AI_TRADING_HMAC_KEY``
  whose key id it names (possession of the secret is the trust).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.signing import (
    ED25519,
    HMAC_MIN_SECRET_BYTES,
    HMAC_SHA256,
    Ed25519Signer,
    HmacSigner,
    Signer,
    key_id,
)
from ai_trading.durable_files import replace_durably, sync_directory
from ai_trading.errors import ConfigError, DevKeyRefused, UntrustedKey

log = logging.getLogger(__name__)

SIGNING_KEY_ENV = "AI_TRADING_SIGNING_KEY"
HMAC_KEY_ENV = "AI_TRADING_HMAC_KEY"
HOME_ENV = "AI_TRADING_HOME"
DEV_KEY_FILE = "dev_ed25519.key"


def ai_trading_home() -> Path:
    """The user directory of keys, keyring and accepted versions: ``$AI_TRADING_HOME`` or
    ``~/.config/ai_trading``."""
    home = os.environ.get(HOME_ENV)
    return Path(home) if home else Path.home() / ".config" / "ai_trading"


def keyring_path() -> Path:
    return ai_trading_home() / "keyring.json"


def dev_key_path() -> Path:
    """Where the local development key is made on first use."""
    return ai_trading_home() / "keys" / DEV_KEY_FILE


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the start (never readable by others, not even briefly), whole or
    not at all: written to a private temporary file, then linked into place (FileExistsError if ``path``
    exists, e.g. another process made it first)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
    sync_directory(path.parent)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``.lock for a read-modify-write of ``path`` by parallel jobs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def generate_key_file(path: Path) -> Ed25519Signer:
    """A new Ed25519 key pair; the private seed goes to ``path`` (0600, refused if it exists)."""
    if path.exists():
        raise ConfigError(f"{path} exists; refusing to overwrite a key")
    seed = bytes(SigningKey.generate())
    try:
        _write_private(path, base64.b64encode(seed).decode("ascii") + "\n")
    except FileExistsError:
        raise ConfigError(f"{path} exists; refusing to overwrite a key") from None
    return Ed25519Signer(seed)


def read_key_file(path: Path) -> bytes:
    """The 32-byte Ed25519 seed in ``path`` (base64 text)."""
    try:
        text = path.read_text().strip()
        seed = base64.b64decode(text, validate=True)
    except (OSError, UnicodeDecodeError, binascii.Error) as exc:
        raise ConfigError(f"signing key file {path}: unreadable or not base64 ({type(exc).__name__})") from None
    if len(seed) != 32:
        raise ConfigError(f"signing key file {path}: expected a 32-byte Ed25519 seed, got {len(seed)} bytes")
    return seed


def public_key_b64(public_key: bytes) -> str:
    return base64.b64encode(public_key).decode("ascii")


def parse_public_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise ConfigError("public key: not base64") from None
    if len(key) != 32:
        raise ConfigError(f"public key: expected 32 bytes (Ed25519), got {len(key)}")
    return key


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public_key: bytes
    label: str
    dev: bool


class Keyring:
    """The trusted Ed25519 public keys (``keyring.json``)."""

    def __init__(self, path: Path, keys: dict[str, TrustedKey]) -> None:
        self.path = path
        self.keys = keys

    @classmethod
    def load(cls, path: Path | None = None) -> Keyring:
        path = path or keyring_path()
        if not path.exists():
            return cls(path, {})
        try:
            data = json.loads(path.read_text())
            keys = {kid: TrustedKey(kid, parse_public_key(entry["public_key"]), str(entry["label"]),
                                    bool(entry["dev"])) for kid, entry in data["keys"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"keyring {path}: unreadable ({type(exc).__name__}: {exc})") from None
        for kid, entry in keys.items():
            if key_id(ED25519, entry.public_key) != kid:
                raise ConfigError(f"keyring {path}: key id {kid} is not the id of its public key")
        return cls(path, keys)

    def trust(self, public_key: bytes, label: str, *, dev: bool = False) -> TrustedKey:
        """Add a public key and write the keyring atomically (under a lock, re-read first, so parallel jobs
        lose no entry); returns its entry. A key already marked ``dev`` stays a development key."""
        kid = key_id(ED25519, public_key)
        with locked(self.path):
            current = type(self).load(self.path).keys
            entry = TrustedKey(kid, public_key, label, dev or (kid in current and current[kid].dev))
            self.keys = {**current, kid: entry}
            payload = {"keys": {k: {"public_key": public_key_b64(e.public_key), "label": e.label, "dev": e.dev}
                                for k, e in sorted(self.keys.items())}}
            replace_durably(self.path, json.dumps(payload, indent=2, sort_keys=True))
        return entry

    def get(self, kid: str, where: str | None = None) -> TrustedKey:
        if kid not in self.keys:
            raise UntrustedKey(f"key id {kid} is not in the trusted keyring {self.path}", where=where)
        return self.keys[kid]


def _dev_signer(refuse_dev_keys: bool) -> Ed25519Signer:
    if refuse_dev_keys:
        raise DevKeyRefused(f"{SIGNING_KEY_ENV} is not set and signing.refuse_dev_keys=true refuses a development "
                            "key: set it to a key file made by `python -m ai_trading.keys generate`")
    path = dev_key_path()
    keyring = Keyring.load()
    created = False
    if not path.exists():
        try:
            generate_key_file(path)
            created = True
        except ConfigError:  # a parallel job of the same sweep made it first: use theirs
            pass
    signer = Ed25519Signer(read_key_file(path), dev=True)
    if created:
        log.warning("no %s set: created a local development signing key key_id=%s at %s, trusted on this machine "
                    "only (production sets %s and signing.refuse_dev_keys=true)", SIGNING_KEY_ENV, signer.key_id,
                    path, SIGNING_KEY_ENV)
    if signer.key_id not in keyring.keys:
        keyring.trust(signer.public_key, f"local development key ({socket.gethostname()})", dev=True)
    return signer


def hmac_secret() -> bytes:
    """The HMAC-SHA256 secret of ``AI_TRADING_HMAC_KEY``."""
    value = os.environ.get(HMAC_KEY_ENV, "")
    if not value:
        raise ConfigError(f"signing.algorithm=hmac-sha256 needs the secret in {HMAC_KEY_ENV}")
    secret = value.encode("utf-8")
    if len(secret) < HMAC_MIN_SECRET_BYTES:
        raise ConfigError(f"{HMAC_KEY_ENV}: the secret must have at least {HMAC_MIN_SECRET_BYTES} bytes")
    return secret


def load_signer(config: SigningConfig) -> Signer:
    """The key that signs this process's manifests (see the module docstring for where it comes from)."""
    if config.algorithm == HMAC_SHA256:
        return HmacSigner(hmac_secret())
    path = os.environ.get(SIGNING_KEY_ENV)
    if not path:
        return _dev_signer(config.refuse_dev_keys)
    signer = Ed25519Signer(read_key_file(Path(path)))
    entry = Keyring.load().keys.get(signer.key_id)
    if entry is not None and entry.dev:
        signer = Ed25519Signer(signer.seed, dev=True)
        if config.refuse_dev_keys:
            raise DevKeyRefused(f"the key of {SIGNING_KEY_ENV} (key_id={signer.key_id}) is a development key in "
                                "the keyring and signing.refuse_dev_keys=true")
    return signer
