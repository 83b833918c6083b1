"""What every image source shares: its error type, the size check, the download/cache folder."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "SCAN_EXPLORER_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/scan_explorer/datasets")
IMAGE_SIZE_RANGE = (4, 1024)

Progress = Callable[[int, int], None]


class SourceError(ValueError):
    """A data source cannot be loaded; the message names the file or dataset and the problem.
    ``problem`` is the problem alone (the message where none is given), for a caller that names
    the source in its own words (the app names an upload by the user's file name)."""

    def __init__(self, message: str, problem: str | None = None):
        super().__init__(message)
        self.problem = problem or message


def default_data_dir() -> Path:
    """Download / cache folder: ``$SCAN_EXPLORER_DATA`` or ``~/.cache/scan_explorer/datasets``."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def check_image_size(image_size: int | None) -> int | None:
    """``image_size`` as an int (or None); ValueError outside :data:`IMAGE_SIZE_RANGE`."""
    if image_size is None:
        return None
    low, high = IMAGE_SIZE_RANGE
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or not low <= image_size <= high:
        raise ValueError(f"image_size must be an integer in [{low}, {high}] or None, "
                         f"got {image_size!r}")
    return int(image_size)


def data_dir_or_default(data_dir: Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
