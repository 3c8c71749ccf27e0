"""Services over trained RL agents: multi-seed promotion gates (:mod:`ai_trading.rl.governance`)."""
