"""Cost sensitivity: the walk-forward trend rule and buy-and-hold under three execution-cost regimes.

Run: ``python experiments/cost_sensitivity.py [--symbols SP500 NASDAQ]``. Same data, folds and seed for
every regime; only the simulator config changes, so the table shows what the costs take.
"""

from __future__ import annotations

import argparse

import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ai_trading.evaluation.strategies import make_strategy
from ai_trading.evaluation.walkforward import WalkForwardConfig, run_walkforward
from ai_trading.paths import CONF_DIR
from ai_trading.pipeline import build_dataset, build_execution_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", nargs="+", default=["SP500", "NASDAQ"])
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for regime in ("zero_cost", "default", "stressed"):
        overrides = [f"simulator={regime}", f"data.symbols=[{','.join(args.symbols)}]", "strategy=trend",
                     f"walkforward.n_folds={args.folds}", "walkforward.show_progress=false",
                     "walkforward.baselines=[buy_and_hold,cash]",
                     f"use_cost_model={regime == 'default'}"]
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose(config_name="evaluate", overrides=overrides)
        dataset = build_dataset(cfg)
        market, params = build_execution_for(cfg, dataset.bars.frame, dataset.bars.frequency)
        strategy = make_strategy(instantiate(cfg.strategy, _convert_="all"))
        wf_config: WalkForwardConfig = instantiate(cfg.walkforward, _convert_="all")
        result = run_walkforward(market, params, dataset.features, strategy, wf_config)
        for name in ("trend", "buy_and_hold"):
            m = result.results[name].metrics
            rows.append({"regime": regime, "strategy": name, "net_sharpe": m["sharpe"],
                         "net_ann_return": m["annualized_return"], "cost_bps": m["cost_bps"],
                         "turnover": m["turnover"]})
    table = pd.DataFrame(rows).set_index(["regime", "strategy"])
    print(table.to_string(float_format=lambda v: f"{v:,.4f}"))


if __name__ == "__main__":
    main()
