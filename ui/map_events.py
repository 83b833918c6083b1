"""The embedding map's events, through two small inline components (``st.components.v2``) that
listen to the plotly map on the page (drawn with ``customdata[0]`` = image index):

- :func:`map_events`: a box, lasso or click on the map comes back as the selected *image
  indices* only, and a zoom as the ranges now shown (a zoom back out as an empty view).
  Streamlit's own ``on_select`` would send every selected point with its coordinates, customdata
  and text: ~3 MB for a box over 20k of 70k points, which the browser builds and the server parses
  on every selection (0.6 s of the 1.2 s it took). The map keeps ``on_select`` for its box and
  lasso tools; this component takes the points out of plotly's selection event before
  Streamlit's listener sees it, so one small message starts one rerun.
- :func:`hover_thumbnails`: the hovered image beside plotly's label. A small run sends one sprite
  sheet of every thumbnail with the page; a big one sends, on the first hover in a region, a sheet
  of the hovered image's :data:`CHUNK` nearest images on the map (a fragment rerun: the map and
  the rest of the page are not redrawn), which the browser keeps for the next hovers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
from scipy.spatial import cKDTree

from scan_core.explore.map_points import Region
from scan_core.explore.results import RunResults
from scan_core.settings import env_int
from ui.artifacts import results_key
from ui.gallery import data_uri
from ui.listeners import plot_component

SHEET_PIXELS_ENV = "SCAN_EXPLORER_HOVER_SHEET_PIXELS"
SHEET_PIXELS = 3_000_000        # a whole sheet up to this size (about 1 MB of PNG) goes with the page
CHUNK = 256                     # images per sheet sent on demand for bigger runs
HOVER_PX = 96

_selection_component = plot_component("scan_map_selection", "image_index", "map_selection")
_hover_component = plot_component("scan_map_hover", "image_index", "map_hover")


@dataclass(frozen=True)
class MapEvent:
    """What the user did on the map in this rerun: ``selected``, the image indices selected (sorted,
    unique; empty: cleared; None: no selection made); ``region``, the box or lasso drawn on a map
    drawn at a level of detail, with ``hidden``, the names of the legend groups hidden then (None:
    no region drawn); ``zoom``, the ranges now shown ``(x0, x1, y0, y1)``, or ``()`` when the user
    zoomed back out (None: no zoom)."""
    selected: np.ndarray | None = None
    zoom: tuple[float, ...] | None = None
    region: Region | None = None
    hidden: tuple[str, ...] = ()


def map_events(n: int, key: str) -> MapEvent:
    """Mount the map's listener and return what it sent in this rerun (:class:`MapEvent`)."""
    sent = _selection_component(key=key, on_selected_change=lambda: None, on_view_change=lambda: None,
                                on_region_change=lambda: None)
    region, hidden = _region(sent.region)
    return MapEvent(_indices(sent.selected, n), _zoom(sent.view), region, hidden)


def _region(sent) -> tuple[Region | None, tuple[str, ...]]:
    """A box or lasso as :class:`~scan_core.explore.map_points.Region` and the hidden groups' names;
    anything malformed is no region."""
    if not isinstance(sent, dict):
        return None, ()
    try:
        region = Region(str(sent.get("kind")), tuple(float(v) for v in sent.get("xs") or ()),
                        tuple(float(v) for v in sent.get("ys") or ()))
    except (TypeError, ValueError):
        return None, ()
    hidden = sent.get("hidden")
    return region, tuple(str(name) for name in hidden) if isinstance(hidden, list) else ()


def _indices(selected, n: int) -> np.ndarray | None:
    """What a browser sends is checked like any input: whole numbers, inside the run."""
    if selected is None:
        return None
    try:
        selected = np.unique(np.asarray(selected, dtype=np.int64).ravel())
    except (TypeError, ValueError, OverflowError):
        return None
    return selected[(selected >= 0) & (selected < n)]


def _zoom(view) -> tuple[float, ...] | None:
    """Four finite ranges, or ``()`` for a zoom out; anything else is no zoom."""
    if isinstance(view, list) and not view:
        return ()
    try:
        ranges = tuple(float(v) for v in view)
    except (TypeError, ValueError):
        return None
    return ranges if len(ranges) == 4 and all(np.isfinite(ranges)) else None


def sprite_sheet(thumbnails: np.ndarray) -> tuple[str, int, int]:
    """``thumbnails`` ``(N, T, T, C)`` tiled row by row into one PNG; ``(data URI, columns, rows)``."""
    n, side = len(thumbnails), thumbnails.shape[1]
    columns = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    tiles = np.zeros((rows * columns, *thumbnails.shape[1:]), dtype=np.uint8)
    tiles[:n] = thumbnails
    sheet = tiles.reshape(rows, columns, side, side, -1).transpose(0, 2, 1, 3, 4).reshape(rows * side, columns * side, -1)
    return data_uri(sheet, None), columns, rows


def _sheet(thumbnails: np.ndarray, ids: np.ndarray | None) -> dict:
    """The JSON a hover component keeps: a sprite of ``thumbnails[ids]`` (``ids`` None: all, in order)."""
    sprite, columns, rows = sprite_sheet(thumbnails if ids is None else thumbnails[ids])
    return {"sprite": sprite, "columns": columns, "rows": rows, "count": len(thumbnails),
            "ids": None if ids is None else ids.tolist()}


@st.cache_resource(max_entries=4, show_spinner=False)
def _whole_sheet(run: tuple, _thumbnails: np.ndarray) -> dict:
    return _sheet(np.asarray(_thumbnails), None)


@st.cache_resource(max_entries=4, show_spinner=False)
def _map_tree(run: tuple, _projection: np.ndarray) -> cKDTree:
    return cKDTree(np.asarray(_projection, dtype=np.float64))


def nearest_on_map(results: RunResults, index: int, count: int = CHUNK) -> np.ndarray:
    """The ``count`` images nearest to image ``index`` on the 2-D map, itself first."""
    if not 0 <= index < len(results.images):
        raise ValueError(f"image index {index} is not in this run of {len(results.images)} images")
    tree = _map_tree(results_key(results), results.projection)
    _, ids = tree.query(np.asarray(results.projection[index], dtype=np.float64), k=min(count, len(results.images)))
    return np.atleast_1d(ids).astype(np.int64)


def whole_sheet_limit() -> int:
    """The most thumbnail pixels sent with the page: ``$SCAN_EXPLORER_HOVER_SHEET_PIXELS``, else
    :data:`SHEET_PIXELS` (0: every run's thumbnails come on demand)."""
    return env_int(SHEET_PIXELS_ENV, SHEET_PIXELS, 0, "pixels")


def hover_thumbnails(results: RunResults, key: str) -> bool:
    """Mount the hover listener (inside a fragment: an on-demand sheet reruns only it). Returns
    whether the whole sheet went with the page (else the sheets come on demand)."""
    thumbnails = results.thumbnails()
    whole = thumbnails.shape[0] * thumbnails.shape[1] * thumbnails.shape[2] <= whole_sheet_limit()
    _hover_fragment(results, key, whole)
    return whole


@st.fragment
def _hover_fragment(results: RunResults, key: str, whole: bool) -> None:
    thumbnails = results.thumbnails()
    wanted = (st.session_state.get(key) or {}).get("wanted")
    if whole:
        sheet = _whole_sheet(results_key(results), thumbnails)
    elif isinstance(wanted, int) and 0 <= wanted < len(thumbnails):
        sheet = _sheet(thumbnails, nearest_on_map(results, wanted))
    else:
        sheet = None
    data = {"run": repr(results_key(results)), "display": HOVER_PX, "on_demand": not whole, "sheet": sheet}
    _hover_component(key=key, data=data, on_wanted_change=lambda: None)
