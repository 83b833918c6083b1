"""A workspace: where the app keeps runs, uploads and its training lock, and which folders the UI may read.

A workspace (``$SCAN_EXPLORER_HOME``, default ``./workspace``) holds ``runs/``, ``uploads/``,
``trash/`` (deleted runs), ``cache/`` (where jobs and the app's preview extract zips and download
datasets, unless ``$SCAN_EXPLORER_DATA`` names another folder) and the training lock
(:mod:`scan_core.explore.jobs`). Folders typed in the UI must lie inside its data roots
(``$SCAN_EXPLORER_DATA_ROOTS``, ``os.pathsep``-separated; default ``WORKSPACE/data`` and
``WORKSPACE/uploads``); a relative folder is looked up in each root in turn.
"""
from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..data.sources import BUILTIN
from ..data.sources.common import DATA_DIR_ENV
from ..settings import env_paths

HOME_ENV = "SCAN_EXPLORER_HOME"
ROOTS_ENV = "SCAN_EXPLORER_DATA_ROOTS"
TRASH_NAME = "trash"
RUN_NAME_MAX = 60


@dataclass(frozen=True)
class Workspace:
    """Where runs, uploads and the training lock live, and which folders the UI may read."""

    home: Path
    data_roots: tuple[Path, ...]
    data_dir: Path  # where sources extract zips and download datasets (``load_source``'s data_dir)

    @classmethod
    def from_env(cls) -> Workspace:
        home = Path(os.environ.get(HOME_ENV) or "workspace").expanduser().resolve()
        roots = env_paths(ROOTS_ENV)
        data_dir = os.environ.get(DATA_DIR_ENV)
        return cls.create(home, roots or None, Path(data_dir) if data_dir else None)

    @classmethod
    def create(cls, home: Path, data_roots: list[Path] | None = None, data_dir: Path | None = None) -> Workspace:
        """The workspace at ``home``; ``data_dir`` defaults to ``home/cache`` so that what users
        upload stays with the workspace, not in a cache of the server's account."""
        home = Path(home).resolve()
        roots = data_roots if data_roots is not None else [home / "data", home / "uploads"]
        workspace = cls(home, tuple(Path(r).resolve() for r in roots),
                        Path(data_dir).expanduser().resolve() if data_dir else home / "cache")
        for folder in (workspace.runs, workspace.uploads):
            folder.mkdir(parents=True, exist_ok=True)
        return workspace

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def uploads(self) -> Path:
        return self.home / "uploads"

    @property
    def trash(self) -> Path:
        """Where deleted runs go (move one back into ``runs/`` to restore it)."""
        return self.home / TRASH_NAME

    def own_run(self, run_dir: Path) -> Path:
        """``run_dir`` resolved, checked to be a run of this workspace (ValueError otherwise)."""
        run_dir = Path(run_dir).resolve()
        if run_dir.parent != self.runs or not any((run_dir / f).exists() for f in ("job.json", "config.json")):
            raise ValueError(f"{run_dir} is not a run of this workspace")
        return run_dir

    def confined(self, text: str) -> Path:
        """The folder or zip ``text`` names, resolved (symlinks too) and checked to lie inside a
        data root; ValueError otherwise, so the UI cannot be used to read ``/etc``. A relative
        path is looked up in each data root in turn (never in the server's working directory):
        the first root where it exists wins."""
        if not text.strip():
            raise ValueError("no folder given")
        typed = Path(text.strip()).expanduser()
        candidates = [typed.resolve()] if typed.is_absolute() else [(root / typed).resolve()
                                                                    for root in self.data_roots]
        inside = [path for path in candidates if self._in_roots(path)]
        if not inside:
            roots = ", ".join(str(r) for r in self.data_roots)
            raise ValueError(f"{candidates[0]} is outside the data roots ({roots}); set {ROOTS_ENV} to allow it")
        found = next((path for path in inside if path.exists()), None)
        if found is None:
            where = "" if typed.is_absolute() else " in any data root"
            raise ValueError(f"{inside[0] if typed.is_absolute() else typed} does not exist{where}")
        return found

    def _in_roots(self, path: Path) -> bool:
        return any(path == root or root in path.parents for root in self.data_roots)

    def new_run_dir(self, name: str) -> Path:
        """A fresh directory under ``runs/`` named after ``name`` (sanitised, made unique)."""
        base = run_name(name)
        candidate, suffix = self.runs / base, 2
        while candidate.exists():
            candidate, suffix = self.runs / f"{base}-{suffix}", suffix + 1
        candidate.mkdir(parents=True)
        return candidate


def run_name(text: str) -> str:
    """``text`` made safe as a directory name: letters and digits of any script (NFC), ``._`` and single
    dashes for every other run of characters; no leading dot; at most :data:`RUN_NAME_MAX` characters."""
    name = re.sub(r"[^\w.]+", "-", unicodedata.normalize("NFC", text)).strip("-.")[:RUN_NAME_MAX].strip("-.")
    return name or "run"


def dataset_spec(workspace: Workspace, dataset: str) -> str:
    """A built-in dataset name as is (with an optional ``:split``), else a confined path."""
    if dataset.split(":")[0] in BUILTIN:
        return dataset
    return str(workspace.confined(dataset))
