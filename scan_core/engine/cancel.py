"""Cancelling a training process: SIGTERM becomes :class:`Cancelled`, which ends the run as
``cancelled`` (resumable) rather than killing it mid-write."""
from __future__ import annotations

import contextlib
import signal


class Cancelled(BaseException):
    """Raised in the training process when the user cancels it (SIGTERM, see :func:`sigterm_cancels`).

    Like KeyboardInterrupt it is no ``Exception``, so no ``except Exception`` swallows it; the
    run ends as ``cancelled``.
    """


@contextlib.contextmanager
def sigterm_cancels():
    """Within the block, SIGTERM raises :class:`Cancelled` (so a run killed with ``kill -TERM``
    records ``cancelled``); the previous handler is restored afterwards."""

    def cancel(signum, frame):
        raise Cancelled("cancelled by user")

    previous = signal.signal(signal.SIGTERM, cancel)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
