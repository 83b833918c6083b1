"""A typed, read-only view of a run's ``metrics.json``: one record per finished stage (its scores,
seconds and what it chose), and ``final``, the cluster stage that is the run's result.

Written by the engine (:class:`scan_core.engine.context.RunContext`), read by the CLI, the explore
layer and the pages through :meth:`RunMetrics.load`.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .artifacts import read_json

METRICS_FILE = "metrics.json"


@dataclasses.dataclass(frozen=True)
class FinalResult:
    """``metrics.json[final]``: which cluster stage is the run's result and why, the temperature that
    calibrates its confidence (:func:`scan_core.method.confidence.neighbour_temperature`), the lift of
    its clusters over chance on the features' neighbours, and a warning when they look like chance."""
    stage: str
    why: str = ""
    temperature: float | None = None
    feature_lift: float | None = None
    warning: str | None = None

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> FinalResult:
        if not isinstance(record.get("stage"), str):
            raise ValueError(f"metrics.json's final record names no stage: {dict(record)!r}")
        fields = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in record.items() if key in fields})

    def to_json(self) -> dict:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


class RunMetrics(Mapping[str, dict]):
    """``metrics.json`` as a mapping of stage name to its record (``final`` included, as written), with
    typed access to what several readers need: :attr:`final` and :meth:`stage`."""

    def __init__(self, records: Mapping[str, Any] | None = None):
        self._records = dict(records or {})

    @classmethod
    def load(cls, run_dir: Path) -> RunMetrics:
        """The run's metrics (empty before its first stage ends, or when the file is unreadable)."""
        return cls(read_json(Path(run_dir) / METRICS_FILE))

    def __getitem__(self, stage: str) -> dict:
        return self._records[stage]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def stage(self, name: str) -> dict:
        """The record of stage ``name``, empty when it has none (yet)."""
        record = self._records.get(name)
        return record if isinstance(record, dict) else {}

    @functools.cached_property
    def final(self) -> FinalResult | None:
        """The run's result (None before a cluster stage has named it)."""
        record = self._records.get("final")
        return FinalResult.from_json(record) if isinstance(record, dict) and "stage" in record else None

    def chosen_partition(self) -> str | None:
        """In words, which candidate partition the scan stage kept and the share of mined neighbour
        pairs each keeps together (:mod:`scan_core.method.candidates`); None for a run without them."""
        scan = self.stage("scan")
        candidates = scan.get("candidates")
        if not isinstance(candidates, list) or not candidates or "chosen" not in scan:
            return None
        others = ", ".join(f"{c['name']} {c['neighbor_agreement']:.0%}" for c in candidates if c["name"] != scan["chosen"])
        chosen = next((c for c in candidates if c["name"] == scan["chosen"]), None)
        kept = f" keeps {chosen['neighbor_agreement']:.0%} of the mined neighbour pairs together" if chosen else ""
        return f"the clusters of {scan['chosen']}:{kept} (the other candidates: {others})"
