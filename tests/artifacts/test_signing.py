"""The project's own signing code against RFC 8032's Ed25519 vectors and an independent implementation;
HMAC-SHA256; key ids; keys from the environment, the development key and the keyring."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.keys import (
    HMAC_KEY_ENV,
    SIGNING_KEY_ENV,
    Keyring,
    ai_trading_home,
    generate_key_file,
    load_signer,
)
from ai_trading.artifacts.signing import Ed25519Signer, HmacSigner, key_id, verify_ed25519, verify_hmac
from ai_trading.errors import ConfigError, DevKeyRefused, SignatureInvalid
from tests.artifacts.helpers import config

VECTORS = json.loads((Path(__file__).parent / "rfc8032_ed25519.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_ed25519_rfc8032_vector_signs_and_verifies_exactly(vector: dict[str, str]) -> None:
    signer = Ed25519Signer(bytes.fromhex(vector["secret"]))
    message = bytes.fromhex(vector["message"])
    assert signer.public_key.hex() == vector["public"]
    assert signer.sign(message).hex() == vector["signature"]
    verify_ed25519(bytes.fromhex(vector["public"]), message, bytes.fromhex(vector["signature"]))
    with pytest.raises(SignatureInvalid):
        verify_ed25519(bytes.fromhex(vector["public"]), message + b"\x00", bytes.fromhex(vector["signature"]))


def test_rfc8032_vector_messages_are_the_documented_ones() -> None:
    by_name = {v["name"]: v for v in VECTORS}
    assert len(bytes.fromhex(by_name["TEST 1024"]["message"])) == 1023
    assert by_name["TEST SHA(abc)"]["message"] == hashlib.sha512(b"abc").hexdigest()


def test_signature_verifies_with_an_independent_ed25519_implementation() -> None:
    signer = Ed25519Signer(os.urandom(32))
    message = b'{"kind":"rl"}'
    signature = signer.sign(message)
    Ed25519PublicKey.from_public_bytes(signer.public_key).verify(signature, message)  # raises when invalid


def test_hmac_signer_matches_the_standard_library_and_rejects_another_secret() -> None:
    secret = os.urandom(32)
    signer = HmacSigner(secret)
    assert signer.sign(b"m") == hmac.new(secret, b"m", hashlib.sha256).digest()
    verify_hmac(secret, b"m", signer.sign(b"m"))
    with pytest.raises(SignatureInvalid):
        verify_hmac(os.urandom(32), b"m", signer.sign(b"m"))


def test_key_id_is_a_short_hash_never_the_key() -> None:
    signer = Ed25519Signer(os.urandom(32))
    # The documented definition, computed here independently: 16 hex digits of SHA-256("ed25519:" + public key).
    assert signer.key_id == hashlib.sha256(b"ed25519:" + signer.public_key).hexdigest()[:16]
    assert signer.key_id == key_id("ed25519", signer.public_key)
    secret = os.urandom(32)
    assert HmacSigner(secret).key_id == hashlib.sha256(b"hmac-sha256:" + secret).hexdigest()[:16]
    assert signer.seed.hex() not in repr(signer) and str(signer.seed) not in repr(signer)
    assert secret.hex() not in repr(HmacSigner(secret)) and str(secret) not in repr(HmacSigner(secret))


def test_first_use_without_a_key_creates_a_trusted_dev_key_with_one_log_line(caplog: pytest.LogCaptureFixture
                                                                            ) -> None:
    with caplog.at_level(logging.INFO):
        first = load_signer(config())
        second = load_signer(config())
    assert first.dev and first.key_id == second.key_id
    lines = [r for r in caplog.records if "development signing key" in r.getMessage()]
    assert len(lines) == 1
    key_file = ai_trading_home() / "keys" / "dev_ed25519.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    entry = Keyring.load().keys[first.key_id]
    assert entry.dev and entry.public_key == first.public_key  # type: ignore[union-attr]


def test_refuse_dev_keys_refuses_creating_or_using_a_dev_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    with pytest.raises(DevKeyRefused):
        load_signer(config(refuse_dev_keys=True))
    dev = load_signer(config())
    monkeypatch.setenv(SIGNING_KEY_ENV, str(ai_trading_home() / "keys" / "dev_ed25519.key"))
    with pytest.raises(DevKeyRefused):  # the dev key named through the variable is still a dev key
        load_signer(config(refuse_dev_keys=True))
    assert load_signer(config()).key_id == dev.key_id


def test_signing_key_comes_from_the_file_named_by_the_environment(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    made = generate_key_file(tmp_path / "prod.key")
    assert stat.S_IMODE((tmp_path / "prod.key").stat().st_mode) == 0o600
    monkeypatch.setenv(SIGNING_KEY_ENV, str(tmp_path / "prod.key"))
    signer = load_signer(config(refuse_dev_keys=True))
    assert isinstance(signer, Ed25519Signer) and signer.seed == made.seed and not signer.dev
    assert not (ai_trading_home() / "keys" / "dev_ed25519.key").exists()
    with pytest.raises(ConfigError):
        generate_key_file(tmp_path / "prod.key")  # never overwrites a key


def test_hmac_secret_comes_from_the_environment_and_must_be_long(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=HMAC_KEY_ENV):
        load_signer(config(algorithm="hmac-sha256"))
    monkeypatch.setenv(HMAC_KEY_ENV, "short")
    with pytest.raises(ConfigError, match="at least 32"):
        load_signer(config(algorithm="hmac-sha256"))
    monkeypatch.setenv(HMAC_KEY_ENV, "x" * 40)
    assert isinstance(load_signer(config(algorithm="hmac-sha256")), HmacSigner)


def test_signing_config_of_the_entrypoints_is_the_yaml_default_and_validates() -> None:
    from ai_trading.wiring import evaluate_config, train_config
    from tests.conftest import compose_config

    assert train_config(compose_config()).research.signing == SigningConfig.default()
    assert evaluate_config(compose_config(config_name="evaluate")).research.signing == SigningConfig.default()
    built = train_config(compose_config(["signing.refuse_dev_keys=true", "signing.dataset_fingerprint_policy=known",
                                         "signing.known_dataset_fingerprints=[abc]"])).research.signing
    assert built.refuse_dev_keys and built.known_dataset_fingerprints == ("abc",)
    for bad in ("signing.algorithm=rsa", "signing.dataset_fingerprint_policy=some", "signing.expires_after_days=0",
                "signing.model_name='x_{nope}'"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            train_config(compose_config([bad]))


def test_parallel_first_use_makes_one_dev_key_and_keeps_every_keyring_entry() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: load_signer(config()).key_id, range(16)))
    assert len(ids) == 1
    others = [Ed25519Signer(os.urandom(32)) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda s: Keyring.load().trust(s.public_key, "k"), others))
    assert {s.key_id for s in others} | ids == set(Keyring.load().keys)
