"""The MLflow run of an entrypoint job (``ai_trading.train``, ``ai_trading.evaluate``).

Kept apart from :mod:`ai_trading.pipeline` so that building data and environments never imports mlflow.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ai_trading.artifacts.build import Provenance, config_hash, sign_directory
from ai_trading.artifacts.manifest import Manifest
from ai_trading.artifacts.signing import Signer
from ai_trading.evaluation.walkforward import WalkForwardResult
from ai_trading.pipeline import Dataset, Execution
from ai_trading.secrets import mask_override, mask_text
from ai_trading.tracking import TrackedRun, git_state, start_run
from ai_trading.tracking.registry import save_pyfunc
from ai_trading.wiring import ResearchConfig


@contextmanager
def start_job_run(config: ResearchConfig, dataset: Dataset, execution: Execution, *, run_name: str,
                  overrides: Sequence[str], tags: Mapping[str, Any] | None = None,
                  parent_run_id: str | None = None, note: str | None = None) -> Iterator[TrackedRun]:
    """The MLflow run of one entrypoint job: the configured store, the resolved config (secrets masked), and
    the provenance every job carries (``feature_schema_hash``, ``dataset_fingerprint``, ``cost_model_hash``,
    seed, the bar frequency) plus ``tags``; nested under ``parent_run_id`` (a sweep's parent run) when given,
    with ``note`` as its description; the data-quality report goes to ``data/quality.json`` with a metric per
    symbol."""
    provenance = {"feature_schema_hash": dataset.features.schema_hash,
                  "dataset_fingerprint": dataset.bars.fingerprint,
                  "cost_model_hash": execution.cost_model_hash, "seed": config.seed,
                  "data_frequency": dataset.bars.frequency.label,
                  "data_periods_per_year": dataset.bars.frequency.periods_per_year}
    with start_run(config.tracking, run_name=mask_text(run_name), resolved_config=config.resolved,
                   overrides=[mask_override(o) for o in overrides], tags={**provenance, **(tags or {})},
                   parent_run_id=parent_run_id, note=None if note is None else mask_text(note)) as run:
        quality = dataset.bars.quality
        run.log_dict(quality.to_dict(), "data/quality.json")
        run.log_metrics({f"data/{q.symbol}/open_equals_prev_close": q.open_equals_prev_close
                         for q in quality.symbols if math.isfinite(q.open_equals_prev_close)})
        yield run


def log_signed_model(run: TrackedRun, config: ResearchConfig, dataset: Dataset, execution: Execution, *,
                     kind: str, write_files: Callable[[Path], object], policy: Mapping[str, Any],
                     metrics: Mapping[str, float], signer: Signer, sweep_id: str, folder: str = "model") -> Manifest:
    """Log the job's model as ``folder/``: an MLflow pyfunc directory (``MLmodel``, the model files under
    ``data/files/``) and the manifest signed over all of it (MLmodel included, so it is written first)."""
    git = git_state()
    provenance = Provenance(feature_schema_hash=dataset.features.schema_hash,
                            dataset_fingerprint=dataset.bars.fingerprint, cost_model_hash=execution.cost_model_hash,
                            config_hash=config_hash(config.resolved), git_commit=git.commit, git_dirty=git.dirty,
                            seed=config.seed, sweep_id=sweep_id, run_id=run.run_id)
    with tempfile.TemporaryDirectory(prefix="ai_trading_model_") as scratch:
        files, root = Path(scratch) / "files", Path(scratch) / folder
        write_files(files)
        data_path = save_pyfunc(root, files)
        manifest = sign_directory(root, kind=kind, provenance=provenance, metrics=metrics,
                                  policy={**policy, "data_path": data_path}, signer=signer, config=config.signing)
        run.log_artifact(root, folder)
    run.set_tags({"manifest_key_id": manifest.key_id, "manifest_algorithm": manifest.algorithm})
    return manifest


def log_fold_runs(parent: TrackedRun, config: ResearchConfig, wf: WalkForwardResult, *, run_name: str, prefix: str,
                  tags: Mapping[str, Any] | None = None) -> list[str]:
    """One child run per walk-forward fold, nested under the job's run: the fold's layout as params (rows,
    dates, the seed its fit ran under), its model's fit information as ``fold/`` metrics and every result's
    (strategy and baselines) metrics on the fold's test block as ``{prefix}/{name}/{net|gross}/{metric}``.
    Returns the child run ids in fold order."""
    fold_rows = {name: r.folds.set_index("fold") for name, r in wf.results.items() if r.folds is not None}
    info = wf.fold_info.set_index("fold")
    ids = []
    for fold in wf.folds:
        row = {str(k): v for k, v in info.loc[fold.index].to_dict().items()}
        layout = {"index": fold.index, "train_start": fold.train_start, "train_stop": fold.train_stop,
                  "test_start": fold.test_start, "test_stop": fold.test_stop, "seed": int(row["seed"]),
                  "backend": wf.backend, "train_first": str(row["train_start"]), "train_last": str(row["train_stop"]),
                  "test_first": str(row["test_start"]), "test_last": str(row["test_stop"])}
        with start_run(config.tracking, run_name=f"{run_name}__fold{fold.index}", resolved_config={"fold": layout},
                       tags={**(tags or {}), "fold": fold.index, "role": "fold"}, parent_run_id=parent.run_id) as run:
            metrics = {f"fold/{k}": float(v) for k, v in row.items() if k != "seed" and _finite(v)}
            for name, table in fold_rows.items():
                results = table.loc[fold.index].to_dict()
                for column, value in results.items():
                    side, _, metric = str(column).partition("_")
                    if side in ("net", "gross") and _finite(value):
                        metrics[f"{prefix}/{name}/{side}/{metric}"] = float(value)
            run.log_metrics(metrics)
            ids.append(run.run_id)
    return ids


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))
