"""The MLflow run of an entrypoint job (``ai_trading.train``, ``ai_trading.evaluate``).

Kept apart from :mod:`ai_trading.pipeline` so that building data and environments never imports mlflow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ai_trading.pipeline import Dataset, Execution
from ai_trading.secrets import mask_text
from ai_trading.tracking import TrackedRun, start_run
from ai_trading.wiring import ResearchConfig


@contextmanager
def start_job_run(config: ResearchConfig, dataset: Dataset, execution: Execution, *, run_name: str,
                  overrides: Sequence[str], tags: Mapping[str, Any] | None = None,
                  parent_run_id: str | None = None, note: str | None = None) -> Iterator[TrackedRun]:
    """The MLflow run of one entrypoint job: the configured store, the resolved config (secrets masked), and
    the provenance every job carries (``feature_schema_hash``, ``dataset_fingerprint``, ``cost_model_hash``,
    seed) plus ``tags``; nested under ``parent_run_id`` (a sweep's parent run) when given, with ``note`` as
    its description."""
    provenance = {"feature_schema_hash": dataset.features.schema_hash,
                  "dataset_fingerprint": dataset.bars.fingerprint,
                  "cost_model_hash": execution.cost_model_hash, "seed": config.seed}
    with start_run(config.tracking, run_name=mask_text(run_name), resolved_config=config.resolved,
                   overrides=[mask_text(o) for o in overrides], tags={**provenance, **(tags or {})},
                   parent_run_id=parent_run_id, note=None if note is None else mask_text(note)) as run:
        yield run
