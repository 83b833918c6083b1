"""Cancelling a training process: SIGTERM becomes :class:`Cancelled`, which ends the run as
``cancelled`` (resumable) rather than killing it mid-write."""
from __future__ import annotations

import contextlib
import signal
import threading


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


@contextlib.contextmanager
def recording_the_stop():
    """Within the block, SIGTERM and SIGINT are ignored: the run is already stopping and records why.
    Under ``torchrun`` a rank that dies makes the agent send SIGTERM to the others while they record
    the failure; that signal must not cut the record short. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
