"""The model manifest: what a model is, where it came from, and the SHA-256 of every file it covers.

``manifest.json`` holds the manifest's canonical bytes (:func:`canonical_bytes`, the one definition: sorted
keys, no whitespace, UTF-8, no NaN or infinity) and ``manifest.sig`` beside it the raw signature over exactly
those bytes (64 bytes for Ed25519, 32 for HMAC-SHA256; raw bytes, so no two encodings of one signature exist).
A metric that is NaN or infinite is recorded as ``null``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ai_trading.errors import MalformedManifest

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
FORMAT = 1
KINDS = ("rl", "ml")
ALGORITHMS = ("ed25519", "hmac-sha256")
_CHUNK = 1 << 20


def canonical_bytes(payload: Mapping[str, Any]) -> bytes:
    """The one byte form of a manifest: JSON with sorted keys, no whitespace, UTF-8; NaN and infinity are
    refused (the builder turns non-finite metrics into ``null`` first)."""
    try:  # UnicodeEncodeError (a lone surrogate parsed from a \\u escape) is a ValueError too
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise MalformedManifest(f"not canonical JSON: {exc}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_files(directory: Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file under ``directory`` except the manifest and its
    signature (what a manifest covers, and what the loader checks against it). A model directory holds
    files and directories only: a symlink or special file is refused."""
    out: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise MalformedManifest(f"{name} is a symlink or special file; a model directory holds files only",
                                    where=str(directory))
        if path.is_file() and name not in (MANIFEST_FILE, SIGNATURE_FILE):
            out[name] = sha256_file(path)
    return out


def finite_or_none(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """Metrics as the manifest records them: NaN and infinity become ``None`` (JSON ``null``)."""
    return {str(k): (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, name: str) -> datetime:
    try:
        stamp = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise MalformedManifest(f"{name}={text!r}: expected UTC time YYYY-MM-DDTHH:MM:SSZ") from None
    return stamp


@dataclass(frozen=True)
class Manifest:
    """One model's manifest (``manifest.json``). ``files`` maps each covered file (relative path) to its
    SHA-256; ``policy`` holds what a loader needs to rebuild the model's inputs (RL: algorithm, symbols,
    feature names, the env's action constraints; ML: feature names). ``model_name``/``version`` are set
    when the model is registered (``version`` is then the registry's version number, which only increases);
    an unregistered run's manifest has ``model_name=None`` and ``version=0``. ``key_id`` and ``algorithm``
    name the signing key and ``dev_key`` says it is a local development key; all three are covered by the
    signature, so a verifier refusing development keys refuses one whatever its own keyring says."""

    kind: str
    files: Mapping[str, str]
    feature_schema_hash: str
    dataset_fingerprint: str
    cost_model_hash: str
    config_hash: str
    git_commit: str
    git_dirty: bool
    seed: int
    sweep_id: str
    run_id: str
    metrics: Mapping[str, float | None]
    created_at: str
    key_id: str
    algorithm: str
    dev_key: bool
    policy: Mapping[str, Any] = field(default_factory=dict)
    governance: Mapping[str, Any] | None = None
    expires_at: str | None = None
    model_name: str | None = None
    version: int = 0
    format: int = FORMAT

    def __post_init__(self) -> None:
        if self.format != FORMAT:
            raise MalformedManifest(f"format={self.format!r}: this code reads format {FORMAT}")
        if self.kind not in KINDS:
            raise MalformedManifest(f"kind={self.kind!r}: expected one of {KINDS}")
        if self.algorithm not in ALGORITHMS:
            raise MalformedManifest(f"algorithm={self.algorithm!r}: expected one of {ALGORITHMS}")
        if not isinstance(self.dev_key, bool):
            raise MalformedManifest(f"dev_key={self.dev_key!r}: must be true or false")
        if not isinstance(self.files, Mapping) or not self.files:
            raise MalformedManifest("files: must list at least one file")
        for name, digest in self.files.items():
            if name.startswith("/") or ".." in Path(name).parts or not isinstance(digest, str):
                raise MalformedManifest(f"files[{name!r}]: must be a relative path inside the model directory")
        if "data_path" in self.policy:
            data_path = self.policy["data_path"]
            if (not isinstance(data_path, str) or PurePosixPath(data_path).is_absolute()
                    or ".." in PurePosixPath(data_path).parts):
                raise MalformedManifest(f"policy.data_path={data_path!r}: must be a relative path inside the model "
                                        "directory")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise MalformedManifest(f"version={self.version!r}: must be an integer >= 0")
        parse_time(self.created_at, "created_at")
        if self.expires_at is not None:
            parse_time(self.expires_at, "expires_at")

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(self).items()}

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, where: str | None = None) -> Manifest:
        """Parse manifest bytes; they must be exactly the canonical bytes of the manifest they hold."""
        try:
            payload = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise MalformedManifest(f"manifest.json is not UTF-8 JSON: {exc}", where=where) from None
        if not isinstance(payload, dict):
            raise MalformedManifest("manifest.json must hold an object", where=where)
        names = {f.name for f in fields(cls)}
        unknown, missing = set(payload) - names, {f.name for f in fields(cls)} - set(payload)
        if unknown or missing:
            raise MalformedManifest(f"fields unknown={sorted(unknown)} missing={sorted(missing)}", where=where)
        try:
            manifest = cls(**payload)
            canonical = manifest.to_bytes()
        except TypeError as exc:
            raise MalformedManifest(str(exc), where=where) from None
        except MalformedManifest as exc:
            raise MalformedManifest(exc.detail, where=where) from None
        if canonical != data:
            raise MalformedManifest("manifest.json is not in canonical form", where=where)
        return manifest

    def replace(self, **changes: Any) -> Manifest:
        return type(self)(**{**self.to_dict(), **changes})


def manifest_digest(data: bytes) -> str:
    """SHA-256 of a manifest's bytes (what registry tags record)."""
    return hashlib.sha256(data).hexdigest()
