"""What the user chose and the app keeps across pages and reruns: the map's selection, the
thumbnails picked in the galleries, and widget values that outlive the page that drew them."""
from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from scan_core.explore.results import RunResults
from ui.keys import KEPT, PICKED, SELECTION


def selection(loaded: RunResults) -> np.ndarray:
    """The image indices last selected on this run's map (Embedding), for the galleries and edits."""
    kept_ids = st.session_state.get(SELECTION)
    if not kept_ids or kept_ids["run"] != str(loaded.dir):
        return np.zeros(0, dtype=np.int64)
    return np.asarray(kept_ids["ids"], dtype=np.int64)


def set_selection(loaded: RunResults, indices) -> None:
    """Keep ``indices`` as this run's selection (an array: a selection may hold a million images)."""
    ids = np.asarray(indices, dtype=np.int64).copy()
    ids.setflags(write=False)
    st.session_state[SELECTION] = {"run": str(loaded.dir), "ids": ids}


def picked(loaded: RunResults) -> list[int]:
    """The thumbnails picked (Ctrl- or Shift-click) in this run's galleries, in the order picked."""
    kept_ids = st.session_state.get(PICKED)
    return list(kept_ids["ids"]) if kept_ids and kept_ids["run"] == str(loaded.dir) else []


def set_picked(loaded: RunResults, indices) -> None:
    st.session_state[PICKED] = {"run": str(loaded.dir), "ids": [int(i) for i in indices]}


def kept(key: str, default: Any = None) -> str:
    """``key`` for a widget whose value should outlive the page (drawn without a default of its own):
    before the widget is drawn, its session state is set to the value it had when a page last drew it,
    else ``default``. Streamlit forgets the state of a widget that a script run does not draw (after
    Back, or a visit to another page); the copy kept here survives. Call :func:`keep` after drawing."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(KEPT, {}).get(key, default)
    return key


def keep(key: str) -> None:
    """Remember the value of the widget ``key`` (:func:`kept`)."""
    st.session_state.setdefault(KEPT, {})[key] = st.session_state.get(key)


def image_number(text: str, n: int) -> int | None:
    """``text`` (``12`` or ``#12``, ASCII digits only) as an image index in ``[0, n)``, else None."""
    digits = str(text).strip().removeprefix("#")
    return int(digits) if digits.isascii() and digits.isdigit() and int(digits) < n else None
