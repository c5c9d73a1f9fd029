"""SIGINT and SIGTERM in the command line: stop cleanly, keep what can be resumed.

Outside training a signal raises :class:`Interrupted` (a ``KeyboardInterrupt``) at once, so
the atomic writers delete their temporary files and nothing half-written stays behind. During
training (:class:`GracefulStop` active) the first signal only asks the work to stop: the
training loop writes a checkpoint at the next step and raises ``Cancelled``; a second signal
aborts at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised by the handlers; ``signum`` says which signal (exit code 128 + signum)."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def install() -> None:
    """Make SIGTERM behave like Ctrl-C (SIGINT) so clean-up code runs; main thread only."""
    if threading.current_thread() is threading.main_thread():
        for s in HANDLED:
            signal.signal(s, _raise)


class GracefulStop:
    """A ``should_stop`` whose first SIGINT/SIGTERM requests a checkpointed stop.

    Use as a context manager around work that polls :meth:`should_stop`.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def should_stop(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum
        print(f"isoapp: {signal.Signals(signum).name} received: stopping after the current step and saving a "
              "checkpoint (send it again to abort at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for s in HANDLED:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()
