"""The fault-injection forkserver's preload: imports the paper driver and warms it (see ``paper_driver.warm``)."""

from tests.oms import paper_driver

paper_driver.warm()
