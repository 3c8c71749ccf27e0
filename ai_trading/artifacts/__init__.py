"""Model artifacts: manifests (build, sign with Ed25519 or HMAC-SHA256), keys and the trusted keyring, and
the verified loader, the only code that turns model files into objects."""

from ai_trading.artifacts.build import Provenance, config_hash, sign_directory
from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.loader import Expectations, LoadedModel, load_model, verify_directory
from ai_trading.artifacts.manifest import Manifest, canonical_bytes

__all__ = ["Expectations", "LoadedModel", "Manifest", "Provenance", "SigningConfig", "canonical_bytes",
           "config_hash", "load_model", "sign_directory", "verify_directory"]
