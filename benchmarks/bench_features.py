"""Feature building rows/s on all bundled daily data, and fingerprint MB/s vs hashlib's raw SHA-256.

Run: python benchmarks/bench_features.py [--repeat N]
The fingerprint ratio compares dataset_fingerprint (canonicalise + serialize + hash) with a bare
hashlib.sha256 over the same value bytes, measured in the same run.
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
from bench_simulator import best_of

from ai_trading.data import DataConfig, dataset_fingerprint, load
from ai_trading.features import FeatureBuilder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions; the best is reported")
    args = parser.parse_args()

    bars = load(DataConfig(symbols=["SP500", "NASDAQ", "NVDA", "ORCL", "YHOO"]))
    builder = FeatureBuilder.default()
    build_s = best_of(lambda: builder.build(bars), args.repeat)
    rows = len(bars.frame)
    print(f"features: {rows} bars x {len(builder.spec.features)} features in {build_s * 1e3:.1f} ms "
          f"= {rows / build_s:,.0f} rows/s")

    payload = np.ascontiguousarray(bars.frame.to_numpy(), dtype="<f8").tobytes()
    index_bytes = bars.frame.index.get_level_values("timestamp").asi8.nbytes
    total_mb = (len(payload) + index_bytes) / 1e6
    fp_s = best_of(lambda: dataset_fingerprint(bars.frame), args.repeat)
    raw_s = best_of(lambda: hashlib.sha256(payload).hexdigest(), args.repeat)
    print(f"fingerprint: {total_mb:.2f} MB in {fp_s * 1e3:.1f} ms = {total_mb / fp_s:,.1f} MB/s")
    print(f"hashlib sha256 over the value bytes: {len(payload) / 1e6 / raw_s:,.1f} MB/s")
    print(f"ratio fingerprint/hashlib time: {fp_s / raw_s:.1f}x (canonicalise + serialize overhead)")


if __name__ == "__main__":
    main()
