"""Brokers the OMS sends orders to: the ``Broker`` protocol and its venues."""
