"""Clean stops on SIGTERM (SLURM timeouts and preemption, ``kill``) and Ctrl-C (SIGINT).

While :func:`graceful_interrupts` is active the first such signal only sets a flag: long work checks it at
its next step boundary (training stops after the current environment step), and the job then raises
:class:`~ai_trading.errors.Interrupted` so that its run is closed as KILLED with the reason. A second Ctrl-C
stops at once.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from ai_trading.errors import Interrupted

log = logging.getLogger(__name__)


class StopFlag:
    """The first stop signal received, or None."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def check(self, where: str) -> None:
        """Raise :class:`Interrupted` if a stop signal arrived (``where`` names the step for the message)."""
        if self.signal is not None:
            raise Interrupted(self.signal.name, int(self.signal), where)


@contextmanager
def graceful_interrupts() -> Iterator[StopFlag]:
    """Turn SIGTERM and SIGINT into a :class:`StopFlag` for the duration of the block."""
    flag = StopFlag()

    def handle(signum: int, frame: FrameType | None) -> None:
        received = signal.Signals(signum)
        if flag.signal is not None and received is signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
        if flag.signal is None:
            flag.signal = received
            log.warning("received %s: stopping at the next step boundary (Ctrl-C again to stop at once)",
                        received.name)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
