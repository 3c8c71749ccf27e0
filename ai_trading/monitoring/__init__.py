"""Monitoring: alerts (rules, the router, the durable outbox, sinks) and the persisted kill switch.

Every alert goes through :class:`~ai_trading.monitoring.alerts.Router`: one door. Nothing here imports hydra,
omegaconf or mlflow; configs arrive typed (:func:`~ai_trading.monitoring.config.alerts_config_from_mapping`).
"""
