"""The verified loader: the only code that turns model files into objects.

``load_model(source, ...)`` takes ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
``runs:/<run_id>/<path>`` (downloaded through :mod:`ai_trading.tracking.download`) or a local directory, copies
it into a private temporary directory (so the bytes checked are the bytes loaded), and checks, in this order:

1. ``manifest.json``'s bytes against ``manifest.sig`` with a trusted key of the configured algorithm
   (``algorithm``, ``untrusted_key``, ``dev_key``, ``signature``); only the key id and algorithm are read
   before, to pick the key;
2. the manifest parses and is canonical (``malformed``);
3. every listed file's SHA-256 (``file_hash``) and no file that is not listed (``unlisted_file``);
4. expiry (``expired``);
5. what was asked for: the registered name and version of a ``models:/`` URI, the model kind and the
   registered name the job requires (``wrong_model``);
6. provenance against the caller's job: ``feature_schema_hash``, ``cost_model_hash`` and the dataset
   fingerprint policy (``match`` / ``known`` / ``any``);
7. the version is not lower than the last accepted for that model name (``version_rollback``; a rollback
   is a new signed, higher version pointing at the old files), checked and recorded under one lock.

Only then is anything deserialised (SB3's zip, VecNormalize, joblib: all pickle-based). Each failure raises a
:class:`~ai_trading.errors.ManifestVerificationError` subclass naming its check.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.keys import Keyring, ai_trading_home, hmac_secret, locked
from ai_trading.artifacts.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Manifest,
    model_files,
    parse_time,
)
from ai_trading.artifacts.signing import ED25519, HMAC_SHA256, key_id, verify_ed25519, verify_hmac
from ai_trading.durable_files import replace_durably
from ai_trading.errors import (
    AlgorithmMismatch,
    ConfigError,
    DevKeyRefused,
    FileHashMismatch,
    MalformedManifest,
    ManifestExpired,
    ProvenanceMismatch,
    UnlistedFile,
    UntrustedKey,
    VersionRollback,
    WrongModel,
)

log = logging.getLogger(__name__)

MODEL_URI_SCHEMES = ("models:/", "runs:/")


@dataclass(frozen=True)
class Expectations:
    """What the caller's job is: its features' schema hash, its cost model's hash and its data's fingerprint
    (None: not checked, e.g. MLflow's pyfunc loader, which has no job around it), the model kind it
    can use (None: any) and the registered model name it may load (None: any model, registered or not).
    Only registered versions are rollback-protected, so operations (live, replay) set ``model_name``: a
    ``runs:/`` model or another name's version is then refused."""

    feature_schema_hash: str | None
    cost_model_hash: str | None
    dataset_fingerprint: str | None
    kind: str | None = None
    model_name: str | None = None


@dataclass(frozen=True)
class Asked:
    """What a ``models:/`` URI asked for: the registered name and its version (None for other sources)."""

    model_name: str | None = None
    version: int | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A verified model: its manifest and the deserialised object (a TrainedAgent for ``rl``, a
    FittedMLStrategy for ``ml``)."""

    manifest: Manifest
    model: Any


class VersionStore:
    """The last accepted version per model name (``$AI_TRADING_HOME/accepted_versions.json``), written
    atomically."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or ai_trading_home() / "accepted_versions.json"

    def read(self) -> dict[str, int]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"accepted-version store {self.path}: unreadable ({exc})") from None
        if not isinstance(data, dict) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                 for v in data.values()):
            raise ConfigError(f"accepted-version store {self.path}: expected {{model name: version}}")
        return data

    def last(self, name: str) -> int | None:
        return self.read().get(name)

    def check_and_accept(self, name: str, version: int, where: str | None = None) -> None:
        """Refuse ``version`` if it is lower than the last accepted for ``name``, else record it; one locked
        read-check-write, so a parallel load of a higher version cannot slip between the check and the write."""
        with locked(self.path):
            data = self.read()
            last = data.get(name)
            if last is not None and version < last:
                raise VersionRollback(f"{name} version {version} is lower than the last accepted version {last} "
                                      "(a rollback is a new, higher signed version)", where=where)
            if last == version:
                return
            data[name] = version
            replace_durably(self.path, json.dumps(data, indent=2, sort_keys=True))


MAX_MANIFEST_BYTES = 1 << 20
MAX_SIGNATURE_BYTES = 4096


def _read(path: Path, where: str, limit: int) -> bytes:
    """The bytes of ``path``, refused above ``limit`` (read at most ``limit + 1``: nothing unbounded is parsed
    before the signature verifies)."""
    if not path.is_file() or path.is_symlink():
        raise MalformedManifest(f"{path.name} is missing", where=where)
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise MalformedManifest(f"{path.name} has more than {limit} bytes", where=where)
    return data


def _verify_signature(data: bytes, signature: bytes, config: SigningConfig, where: str) -> None:
    try:  # only the key id and algorithm, to pick the key; nothing else is read before the signature verifies
        head = json.loads(data.decode("utf-8"))
        kid, algorithm = str(head["key_id"]), str(head["algorithm"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError, MemoryError):
        raise MalformedManifest("manifest.json does not name its key_id and algorithm", where=where) from None
    if algorithm != config.algorithm:
        raise AlgorithmMismatch(f"manifest signed with {algorithm!r}, signing.algorithm={config.algorithm!r} "
                                "accepts only that", where=where)
    if algorithm == ED25519:
        trusted = Keyring.load().get(kid, where)
        if trusted.dev and config.refuse_dev_keys:
            raise DevKeyRefused(f"key id {kid} ({trusted.label}) is a development key and "
                                "signing.refuse_dev_keys=true", where=where)
        verify_ed25519(trusted.public_key, data, signature, where)
    elif algorithm == HMAC_SHA256:
        secret = hmac_secret()
        if key_id(HMAC_SHA256, secret) != kid:
            raise UntrustedKey(f"HMAC key id {kid} is not the id of the secret in AI_TRADING_HMAC_KEY", where=where)
        verify_hmac(secret, data, signature, where)
    else:
        raise MalformedManifest(f"algorithm={algorithm!r} is not ed25519 or hmac-sha256", where=where)


def _check_files(directory: Path, manifest: Manifest, where: str) -> None:
    present = model_files(directory)
    for name, digest in sorted(manifest.files.items()):
        if name not in present:
            raise FileHashMismatch(f"{name} is listed in the manifest but missing", where=where)
        if present[name] != digest:
            raise FileHashMismatch(f"{name} has sha256 {present[name]}, the manifest says {digest}", where=where)
    unlisted = sorted(set(present) - set(manifest.files))
    if unlisted:
        raise UnlistedFile(f"files not covered by the manifest: {unlisted}", where=where)


def _check_provenance(manifest: Manifest, expect: Expectations, config: SigningConfig, where: str) -> None:
    if expect.feature_schema_hash is not None and manifest.feature_schema_hash != expect.feature_schema_hash:
        raise ProvenanceMismatch("feature_schema_hash", expect.feature_schema_hash, manifest.feature_schema_hash,
                                 where=where)
    if expect.cost_model_hash is not None and manifest.cost_model_hash != expect.cost_model_hash:
        raise ProvenanceMismatch("cost_model_hash", expect.cost_model_hash, manifest.cost_model_hash, where=where)
    policy, fingerprint = config.dataset_fingerprint_policy, manifest.dataset_fingerprint
    if policy == "match" and expect.dataset_fingerprint is not None and fingerprint != expect.dataset_fingerprint:
        raise ProvenanceMismatch("dataset_fingerprint", expect.dataset_fingerprint, fingerprint, where=where)
    if policy == "known" and fingerprint not in config.known_dataset_fingerprints:
        raise ProvenanceMismatch("dataset_fingerprint", "one of signing.known_dataset_fingerprints "
                                 f"{list(config.known_dataset_fingerprints)}", fingerprint, where=where)


def verify_directory(directory: Path, config: SigningConfig, expect: Expectations, asked: Asked = Asked(), *,
                     where: str | None = None, versions: VersionStore | None = None,
                     now: datetime | None = None) -> Manifest:
    """Every check of the module docstring on ``directory`` (reads files, deserialises nothing); records
    the accepted version of a registered model. Returns the verified manifest."""
    where = where or str(directory)
    data = _read(directory / MANIFEST_FILE, where, MAX_MANIFEST_BYTES)
    signature = _read(directory / SIGNATURE_FILE, where, MAX_SIGNATURE_BYTES)
    _verify_signature(data, signature, config, where)
    manifest = Manifest.from_bytes(data, where)
    if manifest.dev_key and config.refuse_dev_keys:
        raise DevKeyRefused(f"key id {manifest.key_id} signed as a development key and signing.refuse_dev_keys=true",
                            where=where)
    _check_files(directory, manifest, where)
    if manifest.expires_at is not None and parse_time(manifest.expires_at, "expires_at") <= (now or datetime.now(UTC)):
        raise ManifestExpired(f"the manifest expired at {manifest.expires_at}", where=where)
    if asked.model_name is not None and manifest.model_name != asked.model_name:
        raise WrongModel(f"asked for model {asked.model_name!r}, the manifest is of {manifest.model_name!r}",
                         where=where)
    if asked.version is not None and manifest.version != asked.version:
        raise WrongModel(f"asked for version {asked.version}, the manifest is of version {manifest.version}",
                         where=where)
    if expect.kind is not None and manifest.kind != expect.kind:
        raise WrongModel(f"this job loads {expect.kind} models, the manifest is of a {manifest.kind} model",
                         where=where)
    if expect.model_name is not None and manifest.model_name != expect.model_name:
        raise WrongModel(f"this job loads registered versions of {expect.model_name!r} only, the manifest is of "
                         + ("an unregistered run" if manifest.model_name is None else repr(manifest.model_name)),
                         where=where)
    _check_provenance(manifest, expect, config, where)
    if manifest.model_name is not None:
        (versions or VersionStore()).check_and_accept(manifest.model_name, manifest.version, where)
    log.info("manifest verified kind=%s model=%s version=%d run_id=%s key_id=%s source=%s", manifest.kind,
             manifest.model_name, manifest.version, manifest.run_id, manifest.key_id, where)
    return manifest


def _copy_files_only(source_fd: int, target: Path, relative: str, where: str, leave_out: tuple[str, ...]) -> None:
    """Copy the directory open as ``source_fd`` into ``target``, deciding on what each entry is at the moment
    it is opened (no symlink is followed, nothing but regular files and directories is copied), so an entry
    swapped for a symlink or a FIFO after a look cannot slip in."""
    target.mkdir(mode=0o700)
    for name in sorted(os.listdir(source_fd)):
        path = f"{relative}{name}"
        refused = UnlistedFile(f"{path} is a symlink or special file; a model directory holds files only",
                               where=where)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=source_fd)
        except OSError:  # ELOOP: a symlink; anything else unreadable is refused alike
            raise refused from None
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                _copy_files_only(fd, target / name, path + "/", where, ())
            elif not stat.S_ISREG(mode):
                raise refused
            elif name not in leave_out:
                with open(fd, "rb", closefd=False) as src, open(target / name, "xb") as dst:
                    shutil.copyfileobj(src, dst)
        finally:
            os.close(fd)


@contextmanager
def private_copy(directory: Path, where: str, *, leave_out: tuple[str, ...] = ()) -> Iterator[Path]:
    """A copy of ``directory`` only this process can read, so the verified bytes are the loaded bytes;
    ``leave_out``: top-level files not copied (metadata MLflow writes beside a downloaded model). A symlink
    or special file anywhere inside raises :class:`UnlistedFile`."""
    try:
        source_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        raise MalformedManifest(f"{directory} is not a model directory", where=where) from None
    try:
        with tempfile.TemporaryDirectory(prefix="ai_trading_verified_") as scratch:
            target = Path(scratch) / "model"
            _copy_files_only(source_fd, target, "", where, leave_out)
            yield target
    finally:
        os.close(source_fd)


@contextmanager
def verified_directory(source: str | Path, config: SigningConfig, expect: Expectations, *,
                       tracking: Any = None, asked: Asked = Asked(), leave_out: tuple[str, ...] = ()
                       ) -> Iterator[tuple[Path, Manifest]]:
    """Resolve ``source``, verify a private copy and yield it with its manifest (the files are deleted
    when the block ends). ``tracking`` (a TrackingConfig) is needed for ``models:/`` and ``runs:/``."""
    text = str(source)
    with tempfile.TemporaryDirectory(prefix="ai_trading_download_") as download:
        if text.startswith(MODEL_URI_SCHEMES):
            if tracking is None:
                raise ConfigError(f"{text}: a model URI needs the tracking config to download it")
            from ai_trading.tracking.download import download_model

            resolved = download_model(tracking, text, Path(download))
            local, asked = resolved.directory, Asked(resolved.model_name, resolved.version)
        else:
            local = Path(text)
        with private_copy(local, text, leave_out=leave_out) as copy:
            manifest = verify_directory(copy, config, expect, asked, where=text)
            yield copy, manifest


def load_model(source: str | Path, config: SigningConfig, expect: Expectations, *, tracking: Any = None,
               asked: Asked = Asked(), leave_out: tuple[str, ...] = ()) -> LoadedModel:
    """Resolve, verify (module docstring) and only then deserialise the model of ``source``."""
    with verified_directory(source, config, expect, tracking=tracking, asked=asked,
                            leave_out=leave_out) as (directory, manifest):
        return LoadedModel(manifest, _deserialise(directory, manifest, str(source)))


def _covered(root: Path, path: Path, manifest: Manifest, where: str) -> Path:
    """``path`` if it is a file the manifest lists (resolved inside ``root``): nothing else is ever opened."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root) or resolved.relative_to(root).as_posix() not in manifest.files:
        raise MalformedManifest(f"{path.relative_to(root) if path.is_relative_to(root) else path} is not a file the "
                                "manifest covers", where=where)
    return resolved


def _deserialise(directory: Path, manifest: Manifest, where: str) -> Any:
    """Open the verified files; called only after :func:`verify_directory` passed on ``directory``."""
    root = directory.resolve()
    data = (root / str(manifest.policy.get("data_path", "."))).resolve()
    if not data.is_relative_to(root):
        raise MalformedManifest(f"policy.data_path={manifest.policy.get('data_path')!r} leaves the model directory",
                                where=where)
    if manifest.kind == "rl":
        from ai_trading.rl_trading.train import MODEL_FILE, NORMALIZER_FILE

        normalizer = data / NORMALIZER_FILE
        return _load_agent(_covered(root, data / MODEL_FILE, manifest, where),
                           _covered(root, normalizer, manifest, where) if normalizer.exists() else None,
                           manifest, where)
    from ai_trading.evaluation.strategies import ML_STRATEGY_FILE

    return _load_ml(_covered(root, data / ML_STRATEGY_FILE, manifest, where), manifest, where)


def _load_agent(model_file: Path, normalizer_file: Path | None, manifest: Manifest, where: str) -> Any:
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from ai_trading.rl_trading.train import ALGORITHMS, TrainedAgent

    algo = str(manifest.policy.get("algo"))
    if algo not in ALGORITHMS:
        raise MalformedManifest(f"policy.algo={algo!r} is not one of {sorted(ALGORITHMS)}", where=where)
    model = ALGORITHMS[algo].load(model_file, device="cpu")
    normalizer = None
    if normalizer_file is not None:
        spaces = (model.observation_space, model.action_space)

        class _Spaces(gym.Env):  # VecNormalize.load needs a VecEnv of these spaces
            observation_space, action_space = spaces

        normalizer = VecNormalize.load(str(normalizer_file), DummyVecEnv([_Spaces]))
        normalizer.training = False
        normalizer.norm_reward = False
    return TrainedAgent(model=model, normalizer=normalizer, timesteps=int(model.num_timesteps))


def _load_ml(path: Path, manifest: Manifest, where: str) -> Any:
    import joblib

    from ai_trading.evaluation.strategies import ML_STRATEGY_FILE, FittedMLStrategy

    obj = joblib.load(path)
    if not isinstance(obj, FittedMLStrategy):
        raise MalformedManifest(f"{ML_STRATEGY_FILE} holds a {type(obj).__name__}, not a FittedMLStrategy",
                                where=where)
    if obj.schema_hash != manifest.feature_schema_hash:
        raise ProvenanceMismatch("feature_schema_hash", manifest.feature_schema_hash, obj.schema_hash, where=where)
    return obj
