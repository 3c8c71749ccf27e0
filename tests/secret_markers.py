"""Marker values for every credential the platform reads, and a scanner that finds them wherever a run wrote:
text, byte strings, every file under a directory, every row of a database, every run and registered model of an
MLflow store. Shared by the secrets tests (one list of credentials, one definition of "leaked")."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import MetaData, select

from ai_trading.oms.db import make_engine

# Distinct per variable, so a finding names the credential that leaked; random per test process, so a copy of
# this source (a run's git diff of the working tree, say) is never mistaken for a leak.
_RUN = secrets.token_hex(4)
OMS_DB_PASSWORD = f"OMS-DB-PASSWORD-MARKER-{_RUN}"
PAPER_DB_PASSWORD = f"PAPER-DB-PASSWORD-MARKER-{_RUN}"
HMAC_KEY = f"HMAC-KEY-MARKER-{_RUN}-0123456789abcdef"  # the HMAC signer wants at least 32 bytes
SIGNING_SEED = f"SIGNING-KEY-MARKER-{_RUN}".encode().ljust(32, b"0")  # Ed25519 seed; its file holds base64
WEBHOOK_SECRET = f"WEBHOOK-SECRET-MARKER-{_RUN}"
SMTP_USER = f"SMTP-USER-MARKER-{_RUN}"
SMTP_PASSWORD = f"SMTP-PASSWORD-MARKER-{_RUN}"
ALPACA_KEY_ID = f"PKALPACAKEYIDMARKER{_RUN.upper()}"
ALPACA_SECRET = f"ALPACA-SECRET-MARKER-{_RUN}"
MLFLOW_TOKEN = f"MLFLOW-TOKEN-MARKER-{_RUN}"
MLFLOW_PASSWORD = f"MLFLOW-PASSWORD-MARKER-{_RUN}"

# Environment variable -> marker, for every credential variable the platform or a library it drives reads.
# AI_TRADING_OMS_DSN / AI_TRADING_PAPER_DSN and AI_TRADING_SIGNING_KEY (a key file's path) are set per test.
CREDENTIAL_ENV: dict[str, str] = {
    "AI_TRADING_HMAC_KEY": HMAC_KEY,
    "AI_TRADING_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "AI_TRADING_SMTP_USER": SMTP_USER,
    "AI_TRADING_SMTP_PASSWORD": SMTP_PASSWORD,
    "APCA_API_KEY_ID": ALPACA_KEY_ID,
    "APCA_API_SECRET_KEY": ALPACA_SECRET,
    "MLFLOW_TRACKING_TOKEN": MLFLOW_TOKEN,
    "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORD,
}


def signing_key_text() -> str:
    """The key file's content (what ``python -m ai_trading.keys generate`` writes: base64 of the seed)."""
    return base64.b64encode(SIGNING_SEED).decode()


def write_signing_key(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(signing_key_text() + "\n")
    path.chmod(0o600)
    return path


ALL_MARKERS: dict[str, bytes] = {
    "oms dsn password": OMS_DB_PASSWORD.encode(),
    "paper venue dsn password": PAPER_DB_PASSWORD.encode(),
    "hmac key": HMAC_KEY.encode(),
    "signing key seed": SIGNING_SEED,
    "signing key file content": signing_key_text().encode(),
    "webhook secret": WEBHOOK_SECRET.encode(),
    "smtp user": SMTP_USER.encode(),
    "smtp password": SMTP_PASSWORD.encode(),
    "alpaca key id": ALPACA_KEY_ID.encode(),
    "alpaca secret": ALPACA_SECRET.encode(),
    "mlflow token": MLFLOW_TOKEN.encode(),
    "mlflow password": MLFLOW_PASSWORD.encode(),
}


@dataclass
class SecretScan:
    """Collects every place a marker shows up; :meth:`assert_clean` fails naming them all."""

    markers: Mapping[str, bytes] = field(default_factory=lambda: dict(ALL_MARKERS))
    findings: list[str] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)

    def bytes(self, where: str, data: bytes) -> None:
        self.scanned.append(where)
        for name, marker in self.markers.items():
            at = data.find(marker)
            if at >= 0:
                context = data[max(0, at - 80):at + len(marker) + 40].decode("utf-8", "replace")
                self.findings.append(f"{name} in {where}: ...{context}...")

    def text(self, where: str, text: str) -> None:
        self.bytes(where, text.encode("utf-8", "surrogateescape"))

    def tree(self, root: Path, *, skip: Iterable[Path] = ()) -> int:
        """Every file under ``root`` (raw bytes: a SQLite file's rows, a pickle, a log); returns the count."""
        skipped = {p.resolve() for p in skip}
        count = 0
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.resolve() not in skipped:
                self.bytes(str(path), path.read_bytes())
                count += 1
        return count

    def database(self, dsn: str, label: str) -> int:
        """Every row of every table, as text; returns the row count."""
        engine = make_engine(dsn)
        rows = 0
        try:
            meta = MetaData()
            meta.reflect(engine)
            with engine.connect() as conn:
                for table in meta.sorted_tables:
                    for row in conn.execute(select(table)):
                        rows += 1
                        self.text(f"{label} table {table.name}", repr(tuple(row)))
        finally:
            engine.dispose()
        return rows

    def mlflow(self, tracking_uri: str) -> int:
        """Every experiment, run (params, tags, metric keys), registered model and version (tags, description,
        source) the store's API shows, and every artifact file of each run; returns the number of runs."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        runs = 0
        for experiment in client.search_experiments():
            self.text(f"mlflow experiment {experiment.name}", repr(experiment))
            for run in client.search_runs([experiment.experiment_id]):
                runs += 1
                where = f"mlflow run {run.info.run_id} ({run.info.run_name})"
                self.text(where, repr(run.info) + repr(run.data.params) + repr(run.data.tags)
                          + repr(sorted(run.data.metrics)))
                pending = [""]
                while pending:
                    for item in client.list_artifacts(run.info.run_id, pending.pop() or None):
                        if item.is_dir:
                            pending.append(item.path)
                        else:
                            local = Path(client.download_artifacts(run.info.run_id, item.path))
                            self.bytes(f"{where} artifact {item.path}", local.read_bytes())
        for model in client.search_registered_models():
            self.text(f"mlflow model {model.name}", repr(model))
            for version in client.search_model_versions(f"name='{model.name}'"):
                self.text(f"mlflow model {model.name} v{version.version}", repr(version))
        return runs

    def assert_clean(self) -> None:
        assert not self.findings, "secrets leaked:\n" + "\n".join(self.findings)
