"""The map's level of detail and region selection (``scan_core.explore.map_points``), checked against
brute force on points whose answers are worked out here."""
from __future__ import annotations

import numpy as np
import pytest

from scan_core.explore.map_points import Region, density, in_region, inside, thinned


def blobs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, (8, 2))
    return (centres[rng.integers(0, 8, n)] + rng.normal(0, 1.0, (n, 2))).astype(np.float32)


def test_a_view_with_few_enough_points_draws_every_one_in_its_ranges():
    xy = blobs(3_000)
    candidates = np.flatnonzero(np.arange(3_000) % 3 != 0)
    assert np.array_equal(thinned(xy, candidates, None, limit=2_000), candidates)
    x0, x1, y0, y1 = -4.0, 6.0, -3.0, 2.0
    expected = [i for i in candidates if x0 - 1.0 <= xy[i, 0] <= x1 + 1.0 and y0 - 0.5 <= xy[i, 1] <= y1 + 0.5]
    assert thinned(xy, candidates, (x1, x0, y1, y0), limit=2_000, margin=0.1).tolist() == expected


def test_a_crowded_view_keeps_one_point_per_cell_the_one_of_least_rank():
    xy = blobs(20_000, seed=1)
    candidates = np.arange(20_000)
    limit = 400
    drawn = thinned(xy, candidates, None, limit=limit)
    assert 0 < len(drawn) <= limit and len(np.unique(drawn)) == len(drawn)
    # brute force: square cells over the extent, at most `limit` of them; in each, the least rank
    low, high = xy.min(0).astype(np.float64), xy.max(0).astype(np.float64)
    width, height = high - low
    side = (width * height / limit) ** 0.5
    columns, rows = int(width / side), int(height / side)
    assert columns * rows <= limit
    best: dict[tuple[int, int], tuple[int, int]] = {}
    for i in range(20_000):
        cell = (min(int((xy[i, 0] - low[0]) / (width / columns)), columns - 1),
                min(int((xy[i, 1] - low[1]) / (height / rows)), rows - 1))
        rank = (i * 0x9E3779B1) % 2**32
        if cell not in best or rank < best[cell][0]:
            best[cell] = (rank, i)
    assert sorted(i for _, i in best.values()) == drawn.tolist()
    assert thinned(xy, candidates, None, limit=limit).tolist() == drawn.tolist()  # the same on every call


def test_thinning_a_zoom_draws_only_near_its_ranges():
    xy = blobs(20_000, seed=2)
    ranges = (-2.0, 2.0, -2.0, 2.0)
    near = inside(xy, np.arange(20_000), ranges, margin=0.1)
    drawn = thinned(xy, np.arange(20_000), ranges, limit=100)
    assert len(near) > 100 and 0 < len(drawn) <= 100 and set(drawn) <= set(near)


def test_a_box_or_a_lasso_selects_every_point_inside_drawn_or_not():
    xy = blobs(5_000, seed=3)
    candidates = np.flatnonzero(np.arange(5_000) % 4 != 1)
    box = Region("box", (3.0, -2.0), (-1.0, 4.0))
    expected = [i for i in candidates if -2.0 <= xy[i, 0] <= 3.0 and -1.0 <= xy[i, 1] <= 4.0]
    assert in_region(xy, candidates, box).tolist() == expected
    a, b, c = np.array([-6.0, -5.0]), np.array([7.0, -3.0]), np.array([0.0, 8.0])  # a triangle, by barycentrics
    matrix = np.array([b - a, c - a]).T
    weights = np.linalg.solve(matrix, (xy.astype(np.float64) - a).T).T
    within = (weights[:, 0] > 0) & (weights[:, 1] > 0) & (weights.sum(1) < 1)
    lasso = Region("lasso", (a[0], b[0], c[0]), (a[1], b[1], c[1]))
    assert in_region(xy, candidates, lasso).tolist() == [i for i in candidates if within[i]]


def test_density_counts_every_candidate_once():
    xy = blobs(4_000, seed=4)
    candidates = np.arange(0, 4_000, 2)
    counts, xs, ys = density(xy, candidates, None, bins=30)
    assert counts.shape == (30, 30) and counts.sum() == 2_000 and len(xs) == len(ys) == 30
    cell = (np.abs(xs - xy[0, 0]).argmin(), np.abs(ys - xy[0, 1]).argmin())
    assert counts[cell] >= 1
    flat, _, _ = density(np.zeros((5, 2)), np.arange(5), None, bins=4)  # all at one place
    assert flat.sum() == 5


@pytest.mark.parametrize("kind, xs, ys, message", [
    ("circle", (0, 1), (0, 1), "box.*lasso"),
    ("box", (0, 1, 2), (0, 1, 2), "needs 2"),
    ("lasso", (0, 1), (0, 1), "needs 3"),
    ("box", (0, float("nan")), (0, 1), "finite"),
    ("lasso", (0, 1, 2), (0, 1), "as many"),
])
def test_a_malformed_region_is_refused(kind, xs, ys, message):
    with pytest.raises(ValueError, match=message):
        Region(kind, xs, ys)


def test_bad_arguments_are_refused_with_a_message():
    xy = blobs(10)
    with pytest.raises(ValueError, match="limit"):
        thinned(xy, np.arange(10), None, limit=0)
    with pytest.raises(ValueError, match="indices into the 10"):
        thinned(xy, np.array([3, 10]), None)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        inside(np.zeros((4, 3)), np.arange(4), (0, 1, 0, 1))
    with pytest.raises(ValueError, match="four finite"):
        inside(xy, np.arange(10), (0, 1, 0))
