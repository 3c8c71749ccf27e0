"""Typed exceptions raised on every fail-fast path of the package.

Each error names what failed and where (symbol, timestamp, file, expected vs actual), so a
log line alone is enough to find the bad input.
"""

from __future__ import annotations

from typing import Any


class AiTradingError(Exception):
    """Base class of every error the package raises on purpose."""


class ConfigError(AiTradingError):
    """A configuration value is missing, of the wrong type or out of range."""


class DataValidationError(AiTradingError):
    """Bars broke a validation rule; names the rule, the symbol and the timestamp when known."""

    def __init__(
        self,
        rule: str,
        detail: str,
        *,
        symbol: str | None = None,
        timestamp: Any = None,
        source: str | None = None,
    ) -> None:
        self.rule = rule
        self.symbol = symbol
        self.timestamp = timestamp
        self.source = source
        where = [f"{k}={v}" for k, v in (("symbol", symbol), ("timestamp", timestamp), ("source", source)) if v]
        super().__init__(f"[{rule}] {detail}" + (f" ({', '.join(where)})" if where else ""))


class UnknownSymbolError(DataValidationError):
    """A symbol was asked for that the data source does not hold."""


class FeatureSchemaMismatch(AiTradingError):
    """Features were built with another schema (or from other data) than the consumer expects."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what} mismatch: expected {expected}, actual {actual}")


class OrderValidationError(AiTradingError):
    """An order is malformed: non-positive quantity, NaN price, unknown symbol, time outside the bars."""


class ManifestVerificationError(AiTradingError):
    """A model manifest or the files it covers do not verify; nothing may be loaded. ``check`` names the
    check that failed (each subclass one), ``where`` the model directory or URI."""

    check = "manifest"

    def __init__(self, detail: str, *, where: str | None = None) -> None:
        self.detail = detail
        self.where = where
        super().__init__(f"[{self.check}] {detail}" + (f" ({where})" if where else ""))


class MalformedManifest(ManifestVerificationError):
    """manifest.json or manifest.sig is missing, not canonical JSON, or lacks or adds a field."""

    check = "malformed"


class SignatureInvalid(ManifestVerificationError):
    """The signature does not verify over manifest.json's bytes with the named key."""

    check = "signature"


class UntrustedKey(ManifestVerificationError):
    """The manifest names a key id that is not in the trusted keyring."""

    check = "untrusted_key"


class AlgorithmMismatch(ManifestVerificationError):
    """The manifest is signed with another algorithm than ``signing.algorithm`` (no downgrade to a weaker or
    differently trusted scheme)."""

    check = "algorithm"


class DevKeyRefused(ManifestVerificationError):
    """A development key signed (or would sign) a manifest while ``signing.refuse_dev_keys`` is true."""

    check = "dev_key"


class FileHashMismatch(ManifestVerificationError):
    """A file the manifest covers is missing or its SHA-256 differs from the manifest's."""

    check = "file_hash"


class UnlistedFile(ManifestVerificationError):
    """The model directory holds a file the manifest does not cover."""

    check = "unlisted_file"


class ManifestExpired(ManifestVerificationError):
    """The manifest's ``expires_at`` has passed."""

    check = "expired"


class VersionRollback(ManifestVerificationError):
    """The manifest's version is lower than the last accepted one for its model name."""

    check = "version_rollback"


class WrongModel(ManifestVerificationError):
    """The manifest is of another model than asked for (name, registry version or kind)."""

    check = "wrong_model"


class ProvenanceMismatch(ManifestVerificationError):
    """The manifest's provenance (``feature_schema_hash``, ``cost_model_hash``, ``dataset_fingerprint``)
    is not what the caller's data, features or costs are; ``check`` is the field's name."""

    def __init__(self, field: str, expected: str, actual: str, *, where: str | None = None) -> None:
        self.check = field
        self.expected = expected
        self.actual = actual
        super().__init__(f"the model was built with {field}={actual}, this job has {expected}", where=where)


class IllegalTransition(AiTradingError):
    """An order event does not apply to the order's current state."""


class EvaluationError(AiTradingError):
    """Evaluation inputs are inconsistent (misaligned labels, too few observations, bad split settings)."""


class InSampleEvaluationError(EvaluationError):
    """A saved model would be evaluated on dates its training labels covered; names both ranges."""

    def __init__(self, model: str, train_span: tuple[Any, Any], window: tuple[Any, Any]) -> None:
        self.model = model
        self.train_span = train_span
        self.window = window
        super().__init__(f"model {model!r} was trained on labels from {train_span[0]} to {train_span[1]}; the "
                         f"evaluation window {window[0]} to {window[1]} overlaps it, so its metrics would be "
                         "in-sample (evaluate after the training span, or set allow_in_sample=true to label "
                         "every metric in-sample)")


class SLOBreach(AiTradingError):
    """An evaluation SLO was breached and the configuration says breaches fail the job."""


class Interrupted(AiTradingError):
    """A stop signal (SIGTERM, SIGINT) ended the job at a step boundary; the exit code follows the shell's
    convention, 128 + the signal number."""

    def __init__(self, signal_name: str, signal_number: int, where: str) -> None:
        self.signal_name = signal_name
        self.exit_code = 128 + signal_number
        self.where = where
        super().__init__(f"stopped by {signal_name} during {where}")



class DataDefects(DataValidationError):
    """Every rule one set of bars (one file) broke, reported at once. ``defects`` holds one error per broken
    rule (built without a source, then given this one); ``rule``, ``symbol`` and ``timestamp`` are the
    first's."""

    def __init__(self, defects: list[DataValidationError], *, source: str | None = None) -> None:
        first = defects[0]
        listed = "; ".join(str(d) for d in defects)
        super().__init__(first.rule, f"{len(defects)} defects" + (f" in {source}" if source else "") + f": {listed}")
        self.source = source
        for defect in defects:
            defect.source = source
        self.defects = tuple(defects)
        self.symbol = first.symbol
        self.timestamp = first.timestamp


class SchemaRevisionError(AiTradingError):
    """A database is not at the migrations' head revision; the application refuses to use it."""

    def __init__(self, what: str, url: str, current: str | None, head: str) -> None:
        self.what = what
        self.current = current
        self.head = head
        super().__init__(f"{what} {url} is at revision {current or '<none: never migrated>'}, the code needs "
                         f"{head}: run `AI_TRADING_OMS_DSN={url} alembic upgrade head` (or `alembic -x dsn=... "
                         "upgrade head`) from the checkout first")


class GovernanceRejected(AiTradingError):
    """A sweep failed its promotion gates (``ai_trading.promote``): nothing was registered; names the sweep and
    every failed criterion."""

    def __init__(self, sweep_id: str, reasons: list[str]) -> None:
        self.sweep_id = sweep_id
        self.reasons = tuple(reasons)
        super().__init__(f"sweep {sweep_id} rejected by governance, {len(reasons)} criteria failed: "
                         + "; ".join(reasons))


class Overfill(IllegalTransition):
    """A fill would take an order's filled quantity past its ordered quantity; nothing was recorded."""


class ClientOrderIdError(AiTradingError):
    """A client order id (CIDv2) or one of its fields is malformed; names the field and the value."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"client order id field {field}={value!r}: {rule}")


class UnknownIntent(AiTradingError):
    """The OMS store holds no intent with this client order id."""


class IntentConflict(AiTradingError):
    """An intent was created again under an existing client order id but with other content (a field the
    id does not cover, such as the limit price, or a broker-safe id collision)."""


class MemoryBudgetExceeded(AiTradingError):
    """A data selection would need more memory than the budget allows; raised before anything is loaded, naming
    the size needed, the budget and the knobs that change either."""

    def __init__(self, needed_bytes: int, budget_bytes: int, detail: str) -> None:
        self.needed_bytes = needed_bytes
        self.budget_bytes = budget_bytes
        super().__init__(f"loading this selection needs about {needed_bytes / 1e9:.2f} GB ({detail}), over the "
                         f"memory budget of {budget_bytes / 1e9:.2f} GB: select fewer symbols (data.symbols) or a "
                         "shorter range (data.start / data.end), or raise data.max_memory_gb")


class ReconciliationError(AiTradingError):
    """Startup reconciliation could not make the OMS agree with the broker: trading must not start."""


class MissingExtraError(ConfigError):
    """A configured option needs an optional extra of the package that is not installed."""

    def __init__(self, module: str, option: str, install: str) -> None:
        self.module = module
        self.option = option
        super().__init__(f"{option} needs the {module!r} package, which is not installed: {install}")
