"""Which points of the 2-D map a view draws and which a drawn region selects, for maps of any size.

A browser draws some tens of thousands of WebGL points in about a second and a million in several
(``bench/bench_app.py``), so a big map is drawn at a level of detail, as datashader and Embedding
Atlas do: zoomed out, :func:`thinned` keeps one point per cell of a grid about a point wide (the
map's shape and the mix of its clusters stay, each cell's point chosen at random but the same on
every call); zoomed in, the points of the viewport, all of them once they are few enough. A box or
lasso drawn over a thinned map selects, through :func:`in_region`, every point inside it, drawn or
not. :func:`density` counts the points per bin for the density view.

Positions are ``xy`` ``(N, 2)`` float; ``candidates`` ``(M,)`` the sorted image indices the view may
show (after its filters); ``ranges`` ``(x0, x1, y0, y1)``, the part of the map on screen (None: all).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.path import Path as Polygon

#: Drawn beyond the ranges on screen, as a share of their width and height a side: a short pan shows
#: points before the map is drawn again for the new ranges.
MARGIN = 0.1
_GOLDEN = np.uint64(0x9E3779B1)  # odd: i -> i * _GOLDEN mod 2**32 is a bijection (Knuth's hash)


def _check_xy(xy: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(xy)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must be the (N, 2) map positions, got shape {xy.shape}")
    candidates = np.asarray(candidates)
    if candidates.ndim != 1 or (len(candidates) and not np.issubdtype(candidates.dtype, np.integer)):
        raise ValueError(f"candidates must be a 1-D array of image indices, got {candidates.dtype} {candidates.shape}")
    if len(candidates) and (candidates.min() < 0 or candidates.max() >= len(xy)):
        raise ValueError(f"candidates must be indices into the {len(xy)} map positions")
    return xy, candidates.astype(np.int64, copy=False)


def _check_ranges(ranges) -> tuple[float, float, float, float]:
    values = tuple(float(v) for v in ranges)
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ValueError(f"ranges must be four finite numbers (x0, x1, y0, y1), got {ranges!r}")
    x0, x1, y0, y1 = values
    return min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)


def extent(xy: np.ndarray, candidates: np.ndarray) -> tuple[float, float, float, float]:
    """The ranges ``(x0, x1, y0, y1)`` that hold every candidate (a unit square when there are none)."""
    xy, candidates = _check_xy(xy, candidates)
    if not len(candidates):
        return 0.0, 1.0, 0.0, 1.0
    points = xy[candidates]
    low, high = points.min(0), points.max(0)
    return float(low[0]), float(high[0]), float(low[1]), float(high[1])


def inside(xy: np.ndarray, candidates: np.ndarray, ranges, margin: float = 0.0) -> np.ndarray:
    """The candidates whose positions lie in ``ranges`` widened by ``margin`` of their width and
    height on each side (bounds included)."""
    xy, candidates = _check_xy(xy, candidates)
    x0, x1, y0, y1 = _check_ranges(ranges)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    points = xy[candidates]
    keep = (points[:, 0] >= x0 - dx) & (points[:, 0] <= x1 + dx) & (points[:, 1] >= y0 - dy) & (points[:, 1] <= y1 + dy)
    return candidates[keep]


def priority(indices: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random rank of each image index (distinct for distinct indices below 2**32):
    which point of a cell is drawn, the same on every call and independent of its cluster."""
    return (np.asarray(indices, dtype=np.uint64) * _GOLDEN) & np.uint64(0xFFFFFFFF)


def thinned(xy: np.ndarray, candidates: np.ndarray, ranges=None, limit: int = 50_000,
            margin: float = MARGIN) -> np.ndarray:
    """The points a view draws: the candidates in ``ranges`` (widened by ``margin``; None: all), all
    of them when at most ``limit``, else one per occupied cell of a grid of square cells (at most
    ``limit`` cells over the widened ranges), the one of least :func:`priority`. Sorted indices."""
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"limit must be a positive whole number, got {limit!r}")
    xy, candidates = _check_xy(xy, candidates)
    if ranges is None:
        ranges, margin = extent(xy, candidates), 0.0
    shown = inside(xy, candidates, ranges, margin)
    if len(shown) <= limit:
        return shown
    x0, x1, y0, y1 = _check_ranges(ranges)
    width, height = (x1 - x0) * (1 + 2 * margin), (y1 - y0) * (1 + 2 * margin)
    cell = max(float(np.sqrt(max(width, 1e-12) * max(height, 1e-12) / limit)), 1e-12)
    columns = max(1, min(limit, int(width / cell)))
    rows = max(1, min(limit // columns, int(height / cell)))
    low = np.array([x0 - (x1 - x0) * margin, y0 - (y1 - y0) * margin])
    step = np.array([max(width, 1e-12) / columns, max(height, 1e-12) / rows])
    where = np.floor((xy[shown] - low) / step).astype(np.int64)
    cells = np.clip(where[:, 0], 0, columns - 1) * rows + np.clip(where[:, 1], 0, rows - 1)
    rank = priority(shown)
    least = np.full(columns * rows, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(least, cells, rank)
    return shown[rank == least[cells]]


@dataclass(frozen=True)
class Region:
    """A region drawn on the map: a box (``xs = (x0, x1)``, ``ys = (y0, y1)``) or a lasso (the
    polygon's vertices, 3 or more)."""
    kind: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]

    MAX_VERTICES = 10_000

    def __post_init__(self):
        if self.kind not in ("box", "lasso"):
            raise ValueError(f"a region is a 'box' or a 'lasso', not {self.kind!r}")
        if len(self.xs) != len(self.ys):
            raise ValueError(f"a region needs as many x as y, got {len(self.xs)} and {len(self.ys)}")
        wanted = "2" if self.kind == "box" else f"3 to {self.MAX_VERTICES}"
        if (self.kind == "box" and len(self.xs) != 2) or (self.kind == "lasso" and not 3 <= len(self.xs) <= self.MAX_VERTICES):
            raise ValueError(f"a {self.kind} needs {wanted} points, got {len(self.xs)}")
        if not all(np.isfinite(self.xs)) or not all(np.isfinite(self.ys)):
            raise ValueError("a region's coordinates must be finite numbers")


def in_region(xy: np.ndarray, candidates: np.ndarray, region: Region) -> np.ndarray:
    """The candidates inside ``region`` (a box's bounds included), sorted."""
    xy, candidates = _check_xy(xy, candidates)
    if region.kind == "box":
        return inside(xy, candidates, (*region.xs, *region.ys))
    vertices = np.column_stack([region.xs, region.ys])
    near = inside(xy, candidates, (vertices[:, 0].min(), vertices[:, 0].max(), vertices[:, 1].min(), vertices[:, 1].max()))
    return near[Polygon(vertices).contains_points(xy[near])]


def density(xy: np.ndarray, candidates: np.ndarray, ranges=None, bins: int = 120,
            margin: float = MARGIN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points per bin over ``ranges`` widened by ``margin`` (None: the candidates' extent): counts
    ``(bins, bins)`` indexed ``[x bin, y bin]``, and the bins' centres along x and y ``(bins,)``."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive whole number, got {bins!r}")
    xy, candidates = _check_xy(xy, candidates)
    if ranges is None:
        ranges, margin = extent(xy, candidates), 0.0
    x0, x1, y0, y1 = _check_ranges(ranges)
    dx = (x1 - x0) * margin if x1 > x0 else 0.5  # a flat extent gets a unit-wide bin range
    dy = (y1 - y0) * margin if y1 > y0 else 0.5
    x_edges, y_edges = np.linspace(x0 - dx, x1 + dx, bins + 1), np.linspace(y0 - dy, y1 + dy, bins + 1)
    points = xy[candidates]
    counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=(x_edges, y_edges))
    return counts, (x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2
