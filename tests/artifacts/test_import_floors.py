"""The verified loader and the registry do not import each other in a circle: the loader downloads through
``ai_trading.tracking.download``, which imports nothing of ``ai_trading.artifacts``."""

from __future__ import annotations

import grimp


def test_the_loader_and_the_registry_form_no_import_cycle() -> None:
    graph = grimp.build_graph("ai_trading")
    assert not graph.chain_exists(importer="ai_trading.tracking.download", imported="ai_trading.artifacts",
                                  as_packages=True)
    assert graph.find_shortest_chain(importer="ai_trading.artifacts.loader",
                                     imported="ai_trading.tracking.registry") is None
