"""Market data: bundled real bars, user directories, partitioned Parquet stores, validation and the dataset
fingerprint (in memory or streamed)."""

from ai_trading.data.fingerprint import FingerprintStream, dataset_fingerprint
from ai_trading.data.frequency import BarFrequency, infer_frequency
from ai_trading.data.loader import Bars, DataConfig, load, load_bars
from ai_trading.data.quality import DataQualityReport, QualityConfig, quality_report
from ai_trading.data.schema import BAR_COLUMNS, canonicalize
from ai_trading.data.sources import bundled_symbols
from ai_trading.data.store import ParquetStore
from ai_trading.data.validation import validate_bars

__all__ = [
    "BAR_COLUMNS",
    "BarFrequency",
    "Bars",
    "DataConfig",
    "DataQualityReport",
    "FingerprintStream",
    "ParquetStore",
    "QualityConfig",
    "bundled_symbols",
    "canonicalize",
    "dataset_fingerprint",
    "infer_frequency",
    "load",
    "load_bars",
    "quality_report",
    "validate_bars",
]
