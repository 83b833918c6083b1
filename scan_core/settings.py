"""Settings read from environment variables: whole numbers, amounts and lists, each checked, so a
bad value fails at once with an error naming the variable and the value (``SCAN_EXPLORER_MAP_POINTS
must be a positive whole number of points, not 'lots'``) instead of deep inside the app.

An unset or blank variable gives the default. This module imports nothing of the library's layers,
so every layer and the app may read their settings through it.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path


def _text(name: str) -> str:
    """The variable's value without surrounding blanks ("" when unset)."""
    if not name:
        raise ValueError("an environment variable needs a name")
    return os.environ.get(name, "").strip()


def env_int(name: str, default: int, minimum: int = 0, unit: str = "") -> int:
    """``$name`` as a whole number of ``unit`` of at least ``minimum``, else ``default`` (unset or blank)."""
    text = _text(name)
    if not text:
        return default
    kind = "a positive whole number" if minimum == 1 else "a whole number"
    what = f"{kind} of {unit}" if unit else kind
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(f"{name} must be {what}, not {text!r}")
    value = int(text)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {text!r}")
    return value


def env_float(name: str, default: float, unit: str = "") -> float:
    """``$name`` as a finite number of ``unit`` above 0 (``0.5``, ``1e3``), else ``default`` (unset or blank)."""
    text = _text(name)
    if not text:
        return default
    what = f"a number of {unit}" if unit else "a number"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {what}, not {text!r}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {text!r}")
    return value


def env_list(name: str, separator: str) -> list[str]:
    """The items of ``$name`` split at ``separator``, without surrounding blanks; empty items skipped."""
    if not separator:
        raise ValueError("a list needs a separator")
    return [item.strip() for item in _text(name).split(separator) if item.strip()]


def env_paths(name: str) -> list[Path]:
    """The folders of ``$name``, ``os.pathsep``-separated (``~`` expanded); empty items skipped."""
    return [Path(item).expanduser() for item in env_list(name, os.pathsep)]
