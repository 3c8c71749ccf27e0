"""ai_trading: config-driven research-to-execution platform for systematic trading."""
