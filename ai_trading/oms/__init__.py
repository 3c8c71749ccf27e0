"""Order management: intents, their state machine, durable storage, brokers and reconciliation.

Domain types (``models``, ``idempotency``) import no SQLAlchemy; persistence lives in the store modules.
"""
