"""Progress reporting of a run: a terminal bar and ``events.jsonl`` that a UI can poll (its format
and reader: :mod:`scan_core.data.rundir`). Step events are throttled to a few per second.

A stage may go through parts (the scan stage: its feature banks, then its training); a step event
names its ``part`` when the stage gives one, and its ``eta_s`` is the rate since that part's first step.
A stage that spends its time in one library call reporting nothing (the projection's UMAP) counts
seconds against an estimate instead (:meth:`Progress.timed`): its step events say ``unit: "s"``,
and their ``total`` is the estimate, never stretched to the time it has taken.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from ..data.artifacts import writes


class Progress:
    """Writes stage/step events for one run directory and draws a tqdm bar on a terminal."""

    def __init__(self, run_dir: Path, show_bar: bool = True, min_interval: float = 0.5,
                 on_step: Callable[[], object] | None = None):
        """``on_step``: called at every step (a run's :class:`~scan_core.engine.threads.ThreadGovernor`)."""
        self.on_step = on_step
        self.path = Path(run_dir) / "events.jsonl"
        self.show_bar = show_bar
        self.min_interval = min_interval
        self.stage: str | None = None
        self._bar: tqdm | None = None
        self._stage_started = 0.0
        self._part: tuple | None = None    # (part, total, unit) of the steps being counted
        self._part_started = 0.0
        self._first_step = 0
        self._last_write = 0.0

    def emit(self, kind: str, **fields) -> None:
        """Append one event line (flushed and fsynced so a reader sees whole lines); nothing on a
        rank that does not write (:func:`~scan_core.data.artifacts.set_writes`)."""
        if not writes():
            return
        event = {"time": round(time.time(), 3), "kind": kind, "stage": self.stage, **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(event) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def start(self, stage: str, **fields) -> None:
        self.close_bar()
        self.stage = stage
        self._stage_started = time.time()
        self._part = None
        self.emit("stage_start", **fields)

    def step(self, step: int, total: int, loss: float | None = None, unit: str = "step",
             part: str | None = None) -> None:
        """Report ``step`` of ``total`` in the current stage (with the loss, if any); a ``unit``
        other than ``step`` and a ``part`` of the stage are written into the event. The ETA is the
        rate since the first step of this (part, total, unit), so that what ran before it (set-up, an
        earlier part) does not count."""
        if self.on_step:
            self.on_step()
        now = time.time()
        if self._part != (part, total, unit):  # a new part: its rate is measured from this first step on
            self._part, self._part_started, self._first_step = (part, total, unit), now, step
        if self.show_bar:
            if self._bar is None or self._bar.total != total:
                self.close_bar()
                self._bar = tqdm(total=total, desc=self.stage, unit=unit, file=sys.stderr,
                                 dynamic_ncols=True, leave=True)
            self._bar.update(step - self._bar.n)
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if now - self._last_write >= self.min_interval or step == total:
            done = step - self._first_step
            eta = (now - self._part_started) / done * (total - step) if done > 0 and step <= total else None
            self.emit("step", step=step, total=total, loss=loss, eta_s=None if eta is None else round(eta, 1),
                      **({} if unit == "step" else {"unit": unit}), **({"part": part} if part else {}))
            self._last_write = now

    @contextmanager
    def timed(self, estimate_s: float, every: float = 1.0) -> Iterator[None]:
        """Within the block, a background thread reports the seconds the current stage has run as
        steps (unit ``s``) of a total of ``estimate_s`` seconds, every ``every`` seconds: a moving
        bar for a call that reports nothing. The total stays the estimate when the call runs longer
        (a reader sees ``step > total``: taking longer than estimated)."""
        done = threading.Event()
        total = max(1, round(estimate_s))

        def tick() -> None:
            while not done.wait(every):
                self.step(int(time.time() - self._stage_started), total, unit="s")

        thread = threading.Thread(target=tick, name="progress-timed", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def end(self, **fields) -> None:
        self.close_bar()
        self.emit("stage_end", seconds=round(time.time() - self._stage_started, 2), **fields)

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
