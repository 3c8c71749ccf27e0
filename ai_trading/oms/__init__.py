"""Order management: intents, their state machine, durable storage, brokers and reconciliation.

Domain types (``models``, ``idempotency``) import no SQLAlchemy; persistence lives in the store modules.

- ``models``: ``OrderIntent``, ``Fill``, ``OrderEvent``, ``OrderState``, the transition table
  ``TRANSITIONS`` and ``apply`` (the one definition of how an event moves an order; see its docstring for
  the rules: illegal events, overfill, terminal states, fills once per trade id, fills before acks).
- ``idempotency``: the CIDv2 client order id (``make_cid``, ``parse_cid``) and the broker-safe id sent to
  venues (``broker_safe_id``), with the mapping and its collision bounds.
- ``intent_store``: ``IntentStore(engine)``, the durable store on PostgreSQL or SQLite (``db.make_engine``);
  refuses a database not at the migrations' head (run ``alembic upgrade head``).
- ``tables``: the store's rows; ``migrations/versions/*_0001_oms_store.py`` creates them.
- ``submission``: ``OrderManager(store, broker)``: ``submit`` (create, claim, send under the broker-safe id,
  commit the answer; an unknown outcome is looked up before any resend), ``sync``, ``cancel``.
- ``reconcile``: ``reconcile(manager, foreign_orders)`` at startup; ``ReconciliationError`` refuses trading.
- ``config``: ``OmsConfig`` (``conf/oms/default.yaml``), built by ``ai_trading.wiring.oms_config``.
- ``python -m ai_trading.oms status``: the operator's view (revision, intents by state, last reconciliation).
"""
