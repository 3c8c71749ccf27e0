"""The verified loader: every check rejects what it should, names itself, and no pickle is opened before
every check passed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ai_trading.artifacts.build import write_signed
from ai_trading.artifacts.keys import Keyring, load_signer
from ai_trading.artifacts.loader import Expectations, VersionStore, load_model, verify_directory
from ai_trading.artifacts.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest
from ai_trading.artifacts.signing import Ed25519Signer
from ai_trading.errors import (
    AlgorithmMismatch,
    ConfigError,
    DevKeyRefused,
    FileHashMismatch,
    MalformedManifest,
    ManifestExpired,
    ManifestVerificationError,
    ProvenanceMismatch,
    SignatureInvalid,
    UnlistedFile,
    UntrustedKey,
    VersionRollback,
    WrongModel,
)
from ai_trading.evaluation.strategies import FittedMLStrategy
from tests.artifacts.helpers import MARKER_ENV, ML_STRATEGY_FILE, config, ml_model_bytes, recorder_bytes, signed_dir

ANY = Expectations(None, None, None)


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "unpickled.txt"
    monkeypatch.setenv(MARKER_ENV, str(path))
    return path


@pytest.fixture
def signer() -> Ed25519Signer:
    made = Ed25519Signer(os.urandom(32))
    Keyring.load().trust(made.public_key, "test key")
    return made


def _model(tmp_path: Path, signer: Ed25519Signer, name: str = "m", **kw: object) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    files = {ML_STRATEGY_FILE: recorder_bytes(name), "MLmodel": b"loader_module: ai_trading.artifacts.pyfunc\n",
             "data/extra.bin": os.urandom(256)}
    signed_dir(directory, files, signer, **kw)  # type: ignore[arg-type]
    return directory


def test_a_valid_model_verifies_and_only_then_deserialises(tmp_path: Path, signer: Ed25519Signer,
                                                           marker: Path) -> None:
    directory = _model(tmp_path, signer)
    manifest = verify_directory(directory, config(), ANY)
    assert manifest.files.keys() == {ML_STRATEGY_FILE, "MLmodel", "data/extra.bin"}
    assert not marker.exists()  # verification reads bytes, never unpickles
    with pytest.raises(MalformedManifest, match="not a FittedMLStrategy"):
        load_model(directory, config(), ANY)
    assert marker.read_text() == "m\n"  # the instrument works: loading a verified file runs its pickle


def test_a_real_ml_model_loads(tmp_path: Path, signer: Ed25519Signer) -> None:
    directory = tmp_path / "real"
    directory.mkdir()
    signed_dir(directory, {ML_STRATEGY_FILE: ml_model_bytes()}, signer)
    loaded = load_model(directory, config(), Expectations("f" * 64, "c" * 64, "d" * 64, kind="ml"))
    assert isinstance(loaded.model, FittedMLStrategy) and loaded.manifest.kind == "ml"


def _rejects(directory: Path, marker: Path, error: type[ManifestVerificationError] = ManifestVerificationError,
             expect: Expectations = ANY, **cfg: object) -> ManifestVerificationError:
    with pytest.raises(error) as info:
        load_model(directory, config(**cfg), expect)
    assert not marker.exists(), "a pickle was opened although verification failed"
    return info.value


def test_every_single_byte_change_of_the_manifest_is_rejected(tmp_path: Path, signer: Ed25519Signer,
                                                              marker: Path) -> None:
    directory = _model(tmp_path, signer)
    original = (directory / MANIFEST_FILE).read_bytes()
    for i in range(len(original)):
        changed = bytearray(original)
        changed[i] ^= 0x01
        (directory / MANIFEST_FILE).write_bytes(bytes(changed))
        with pytest.raises(ManifestVerificationError):
            verify_directory(directory, config(), ANY)
    (directory / MANIFEST_FILE).write_bytes(original)
    _rejects_nothing = verify_directory(directory, config(), ANY)
    assert isinstance(_rejects_nothing, Manifest)
    (directory / MANIFEST_FILE).write_bytes(original[:-1])
    _rejects(directory, marker)
    (directory / MANIFEST_FILE).write_bytes(original + b" ")
    _rejects(directory, marker)


def test_every_single_byte_change_of_the_signature_is_rejected(tmp_path: Path, signer: Ed25519Signer,
                                                               marker: Path) -> None:
    directory = _model(tmp_path, signer)
    original = (directory / SIGNATURE_FILE).read_bytes()
    assert len(original) == 64
    for i in range(len(original)):
        for flip in (0x01, 0x80):
            changed = bytearray(original)
            changed[i] ^= flip
            (directory / SIGNATURE_FILE).write_bytes(bytes(changed))
            with pytest.raises(SignatureInvalid):
                verify_directory(directory, config(), ANY)
    (directory / SIGNATURE_FILE).write_bytes(original + b"\x00")
    _rejects(directory, marker, SignatureInvalid)
    (directory / SIGNATURE_FILE).unlink()
    _rejects(directory, marker, MalformedManifest)


def test_every_single_byte_change_of_every_artifact_file_is_rejected(tmp_path: Path, signer: Ed25519Signer,
                                                                 marker: Path) -> None:
    directory = _model(tmp_path, signer)
    for name in (ML_STRATEGY_FILE, "MLmodel", "data/extra.bin"):
        path = directory / name
        original = path.read_bytes()
        for i in range(len(original)):
            changed = bytearray(original)
            changed[i] ^= 0x01
            path.write_bytes(bytes(changed))
            error = _rejects(directory, marker, FileHashMismatch)
            assert name in str(error) and error.check == "file_hash"
        path.write_bytes(original + b"\x00")
        _rejects(directory, marker, FileHashMismatch)
        path.write_bytes(original)
    verify_directory(directory, config(), ANY)


def test_missing_and_unlisted_files_are_rejected(tmp_path: Path, signer: Ed25519Signer, marker: Path) -> None:
    directory = _model(tmp_path, signer)
    (directory / "data" / "evil.pkl").write_bytes(recorder_bytes("evil"))
    assert _rejects(directory, marker, UnlistedFile).check == "unlisted_file"
    (directory / "data" / "evil.pkl").unlink()
    (directory / "data" / "extra.bin").unlink()
    _rejects(directory, marker, FileHashMismatch)


def test_model_a_manifest_with_model_b_files_is_rejected(tmp_path: Path, signer: Ed25519Signer,
                                                         marker: Path) -> None:
    a, b = _model(tmp_path, signer, "a"), _model(tmp_path, signer, "b")
    for name in (MANIFEST_FILE, SIGNATURE_FILE):
        (b / name).write_bytes((a / name).read_bytes())
    _rejects(b, marker, FileHashMismatch)


def test_wrong_and_untrusted_keys_are_rejected(tmp_path: Path, signer: Ed25519Signer, marker: Path) -> None:
    untrusted = Ed25519Signer(os.urandom(32))
    directory = _model(tmp_path, untrusted, "u")
    assert _rejects(directory, marker, UntrustedKey).check == "untrusted_key"
    # A manifest naming the trusted key but signed by another one.
    trusted_dir = _model(tmp_path, signer, "t")
    manifest = Manifest.from_bytes((trusted_dir / MANIFEST_FILE).read_bytes())
    (trusted_dir / SIGNATURE_FILE).write_bytes(untrusted.sign(manifest.to_bytes()))
    _rejects(trusted_dir, marker, SignatureInvalid)


def test_dev_key_is_rejected_under_refuse_dev_keys(tmp_path: Path, marker: Path) -> None:
    dev = load_signer(config())
    directory = _model(tmp_path, dev)  # type: ignore[arg-type]
    verify_directory(directory, config(), ANY)  # trusted locally
    assert _rejects(directory, marker, DevKeyRefused, refuse_dev_keys=True).check == "dev_key"


def test_expired_manifest_is_rejected(tmp_path: Path, signer: Ed25519Signer, marker: Path) -> None:
    directory = _model(tmp_path, signer)
    manifest = Manifest.from_bytes((directory / MANIFEST_FILE).read_bytes())
    write_signed(directory, manifest.replace(expires_at="2020-01-01T00:00:00Z"), signer)
    assert _rejects(directory, marker, ManifestExpired).check == "expired"
    write_signed(directory, manifest.replace(expires_at="2999-01-01T00:00:00Z"), signer)
    verify_directory(directory, config(), ANY)


def test_a_version_lower_than_the_last_accepted_is_rejected(tmp_path: Path, signer: Ed25519Signer,
                                                            marker: Path) -> None:
    directory = _model(tmp_path, signer)
    manifest = Manifest.from_bytes((directory / MANIFEST_FILE).read_bytes())
    write_signed(directory, manifest.replace(model_name="desk", version=3), signer)
    verify_directory(directory, config(), ANY)
    assert VersionStore().last("desk") == 3
    write_signed(directory, manifest.replace(model_name="desk", version=2), signer)
    assert _rejects(directory, marker, VersionRollback).check == "version_rollback"
    write_signed(directory, manifest.replace(model_name="desk", version=4), signer)  # a rollback is a new version
    verify_directory(directory, config(), ANY)
    assert VersionStore().last("desk") == 4


def test_provenance_is_checked_against_the_callers_job(tmp_path: Path, signer: Ed25519Signer,
                                                       marker: Path) -> None:
    directory = _model(tmp_path, signer)
    right = {"feature_schema_hash": "f" * 64, "cost_model_hash": "c" * 64, "dataset_fingerprint": "d" * 64}
    for field in right:
        expect = Expectations(**{**right, field: "9" * 64})
        error = _rejects(directory, marker, ProvenanceMismatch, expect, dataset_fingerprint_policy="match")
        assert isinstance(error, ProvenanceMismatch) and error.check == field
    verify_directory(directory, config(dataset_fingerprint_policy="any"),
                     Expectations(**{**right, "dataset_fingerprint": "9" * 64}))
    _rejects(directory, marker, ProvenanceMismatch, Expectations(**right), dataset_fingerprint_policy="known",
             known_dataset_fingerprints=["9" * 64])
    verify_directory(directory, config(dataset_fingerprint_policy="known", known_dataset_fingerprints=["d" * 64]),
                     Expectations(**right))
    _rejects(directory, marker, WrongModel, Expectations(**right, kind="rl"))


def test_a_directory_without_manifest_is_refused_unopened(tmp_path: Path, marker: Path) -> None:
    directory = tmp_path / "checkpoint"
    directory.mkdir()
    (directory / ML_STRATEGY_FILE).write_bytes(recorder_bytes("checkpoint"))
    _rejects(directory, marker, MalformedManifest)


def test_hmac_signed_model_verifies_with_the_secret_and_rejects_another(tmp_path: Path, marker: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_trading.artifacts.signing import HmacSigner

    secret = "s" * 40
    monkeypatch.setenv("AI_TRADING_HMAC_KEY", secret)
    directory = _model(tmp_path, HmacSigner(secret.encode()), signing=config(algorithm="hmac-sha256"))  # type: ignore[arg-type]
    assert verify_directory(directory, config(algorithm="hmac-sha256"), ANY).algorithm == "hmac-sha256"
    signature = (directory / SIGNATURE_FILE).read_bytes()
    for i in range(len(signature)):
        changed = bytearray(signature)
        changed[i] ^= 0x01
        (directory / SIGNATURE_FILE).write_bytes(bytes(changed))
        with pytest.raises(SignatureInvalid):
            verify_directory(directory, config(algorithm="hmac-sha256"), ANY)
    (directory / SIGNATURE_FILE).write_bytes(signature)
    monkeypatch.setenv("AI_TRADING_HMAC_KEY", "t" * 40)
    _rejects(directory, marker, UntrustedKey, algorithm="hmac-sha256")


def test_a_manifest_of_another_algorithm_than_configured_is_refused(tmp_path: Path, signer: Ed25519Signer,
                                                                    marker: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Holding the HMAC secret must not let an HMAC manifest pass where Ed25519 (and no dev keys) is required,
    nor the reverse."""
    from ai_trading.artifacts.signing import HmacSigner

    secret = "s" * 40
    monkeypatch.setenv("AI_TRADING_HMAC_KEY", secret)
    hmac_dir = _model(tmp_path, HmacSigner(secret.encode()), "h", signing=config(algorithm="hmac-sha256"))  # type: ignore[arg-type]
    error = _rejects(hmac_dir, marker, AlgorithmMismatch, refuse_dev_keys=True)
    assert error.check == "algorithm" and "hmac-sha256" in str(error)
    ed_dir = _model(tmp_path, signer, "e")
    assert _rejects(ed_dir, marker, AlgorithmMismatch, algorithm="hmac-sha256").check == "algorithm"
    verify_directory(hmac_dir, config(algorithm="hmac-sha256"), ANY)
    verify_directory(ed_dir, config(), ANY)


def _signed_raw(directory: Path, payload: dict[str, object], signer: Ed25519Signer) -> None:
    """Sign a manifest payload as is, bypassing the Manifest constructor's checks (what a signer with a bug,
    or a build host that was tricked, could produce)."""
    from ai_trading.artifacts.manifest import canonical_bytes

    data = canonical_bytes(payload)
    (directory / MANIFEST_FILE).write_bytes(data)
    (directory / SIGNATURE_FILE).write_bytes(signer.sign(data))


@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_a_signed_data_path_outside_the_model_directory_is_never_opened(tmp_path: Path, signer: Ed25519Signer,
                                                                         marker: Path, where: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ML_STRATEGY_FILE).write_bytes(recorder_bytes("outside"))
    directory = tmp_path / "m"
    directory.mkdir()
    manifest = signed_dir(directory, {"MLmodel": b"loader_module: ai_trading.artifacts.pyfunc\n"}, signer)
    data_path = str(outside) if where == "absolute" else "../outside"
    _signed_raw(directory, {**manifest.to_dict(), "policy": {**manifest.policy, "data_path": data_path}}, signer)
    error = _rejects(directory, marker, MalformedManifest)
    assert "data_path" in str(error)
    with pytest.raises(MalformedManifest, match="data_path"):
        manifest.replace(policy={"data_path": data_path})


def test_the_deserialiser_opens_only_files_the_manifest_lists(tmp_path: Path, signer: Ed25519Signer,
                                                              marker: Path) -> None:
    from ai_trading.artifacts.loader import _deserialise

    directory = tmp_path / "m"
    directory.mkdir()
    manifest = signed_dir(directory, {"data/MLmodel": b"x"}, signer, policy={"data_path": "data"})
    (directory / "data" / ML_STRATEGY_FILE).write_bytes(recorder_bytes("unlisted"))
    with pytest.raises(MalformedManifest, match="not a file the manifest covers"):
        _deserialise(directory, manifest, "test")
    assert not marker.exists()


def test_version_check_and_record_are_one_step_under_the_lock(tmp_path: Path, signer: Ed25519Signer,
                                                              marker: Path) -> None:
    """A load of v5 that runs while v3 is being checked must either wait (then v3 is first and accepted) or
    make v3 fail: v3 never passes a check that read the store before v5 was recorded."""
    import threading

    v3, v5 = _model(tmp_path, signer, "v3"), _model(tmp_path, signer, "v5")
    for directory, version in ((v3, 3), (v5, 5)):
        manifest = Manifest.from_bytes((directory / MANIFEST_FILE).read_bytes())
        write_signed(directory, manifest.replace(model_name="desk", version=version), signer)
    done_during_check: list[bool] = []

    class Interleaved(VersionStore):
        def read(self) -> dict[str, int]:
            data = super().read()
            if not done_during_check:  # another process loads v5 right after this read
                other = threading.Thread(target=verify_directory, args=(v5, config(), ANY))
                other.start()
                other.join(timeout=1.0)
                done_during_check.append(not other.is_alive())
                self.other = other
            return data

    store = Interleaved()
    try:
        verify_directory(v3, config(), ANY, versions=store)
    except VersionRollback:
        pass
    else:
        assert not done_during_check[0], "v3 passed a version check that v5's acceptance overtook"
    store.other.join()
    assert VersionStore().last("desk") == 5
    with pytest.raises(VersionRollback):
        verify_directory(v3, config(), ANY)


def test_the_version_store_refuses_a_lower_version_and_boolean_entries(tmp_path: Path) -> None:
    store = VersionStore(tmp_path / "versions.json")
    store.check_and_accept("desk", 5)
    store.check_and_accept("desk", 5)
    with pytest.raises(VersionRollback, match="version 3 is lower than the last accepted version 5"):
        store.check_and_accept("desk", 3)
    assert store.last("desk") == 5
    (tmp_path / "versions.json").write_text('{"desk": true}')
    with pytest.raises(ConfigError, match="accepted-version store"):
        store.last("desk")


def test_a_dev_signed_manifest_is_refused_even_where_its_key_is_trusted_as_a_production_key(
        tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = load_signer(config())
    directory = _model(tmp_path, dev)  # type: ignore[arg-type]
    assert Manifest.from_bytes((directory / MANIFEST_FILE).read_bytes()).dev_key
    monkeypatch.setenv("AI_TRADING_HOME", str(tmp_path / "other_machine"))  # its keyring knows nothing of dev keys
    Keyring.load().trust(dev.public_key, "copied from a laptop")  # type: ignore[union-attr]
    assert not Keyring.load().keys[dev.key_id].dev
    verify_directory(directory, config(), ANY)
    assert _rejects(directory, marker, DevKeyRefused, refuse_dev_keys=True).check == "dev_key"


def test_trusting_a_dev_key_again_keeps_it_a_dev_key() -> None:
    dev = load_signer(config())
    assert Keyring.load().keys[dev.key_id].dev
    entry = Keyring.load().trust(dev.public_key, "relabelled")  # type: ignore[union-attr]
    assert entry.dev and Keyring.load().keys[dev.key_id].dev and entry.label == "relabelled"


def test_hostile_manifest_bytes_raise_a_typed_error_before_and_after_the_signature(
        tmp_path: Path, signer: Ed25519Signer, marker: Path) -> None:
    directory = _model(tmp_path, signer)
    original = (directory / MANIFEST_FILE).read_bytes()
    (directory / MANIFEST_FILE).write_bytes(b"[" * 100_000 + b"]" * 100_000)  # deep nesting: RecursionError
    _rejects(directory, marker, MalformedManifest)
    padded = b'{"algorithm":"ed25519","key_id":"' + signer.key_id.encode() + b'","pad":"' + b"a" * (1 << 20) + b'"}'
    (directory / MANIFEST_FILE).write_bytes(padded)
    assert "more than" in str(_rejects(directory, marker, MalformedManifest))
    (directory / MANIFEST_FILE).write_bytes(original)
    (directory / SIGNATURE_FILE).write_bytes(b"\x00" * 5000)
    assert "manifest.sig has more than" in str(_rejects(directory, marker, MalformedManifest))
    # A signed manifest holding a lone surrogate (a \ud800 escape) parses but has no UTF-8 form.
    surrogate = original.replace(b'"git_commit":"abc"', b'"git_commit":"\\ud800"')
    assert surrogate != original
    (directory / MANIFEST_FILE).write_bytes(surrogate)
    (directory / SIGNATURE_FILE).write_bytes(signer.sign(surrogate))
    assert "canonical" in str(_rejects(directory, marker, MalformedManifest))


def test_a_job_that_requires_a_registered_name_refuses_unregistered_runs_and_other_names(
        tmp_path: Path, signer: Ed25519Signer, marker: Path) -> None:
    """Run manifests (model_name=None, version 0) skip the rollback check, so operations name the model."""
    directory = _model(tmp_path, signer)
    live = Expectations(None, None, None, model_name="desk")
    assert "unregistered run" in str(_rejects(directory, marker, WrongModel, live))
    manifest = Manifest.from_bytes((directory / MANIFEST_FILE).read_bytes())
    write_signed(directory, manifest.replace(model_name="other", version=7), signer)
    _rejects(directory, marker, WrongModel, live)
    write_signed(directory, manifest.replace(model_name="desk", version=2), signer)
    assert verify_directory(directory, config(), live).model_name == "desk"


def test_the_private_copy_refuses_symlinks_and_special_files_as_it_copies(tmp_path: Path, signer: Ed25519Signer,
                                                                         marker: Path) -> None:
    from ai_trading.artifacts.loader import private_copy

    directory = _model(tmp_path, signer)
    (tmp_path / "elsewhere.pkl").write_bytes(recorder_bytes("elsewhere"))
    (directory / "data" / "link.pkl").symlink_to(tmp_path / "elsewhere.pkl")
    assert "link.pkl" in str(_rejects(directory, marker, UnlistedFile))
    (directory / "data" / "link.pkl").unlink()
    os.mkfifo(directory / "data" / "pipe")  # opening a FIFO to copy it would block forever
    assert "pipe" in str(_rejects(directory, marker, UnlistedFile))
    (directory / "data" / "pipe").unlink()
    (directory / "data").rename(tmp_path / "real_data")
    (directory / "data").symlink_to(tmp_path / "real_data")
    _rejects(directory, marker, UnlistedFile)
    (directory / "data").unlink()
    (tmp_path / "real_data").rename(directory / "data")
    with private_copy(directory, "test", leave_out=("MLmodel",)) as copy:
        assert (copy / "data" / "extra.bin").read_bytes() == (directory / "data" / "extra.bin").read_bytes()
        assert not (copy / "MLmodel").exists()


def test_signing_a_directory_with_a_symlink_is_refused(tmp_path: Path, signer: Ed25519Signer) -> None:
    directory = tmp_path / "m"
    directory.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"x")
    (directory / "link.bin").symlink_to(tmp_path / "outside.bin")
    with pytest.raises(MalformedManifest, match="symlink"):
        signed_dir(directory, {ML_STRATEGY_FILE: b"y"}, signer)
