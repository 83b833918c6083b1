"""What the pages say about what they show (AppTest): how many of the run's images a capped list
holds."""
from __future__ import annotations

import re

from scan_core.explore.curation import Curation

from apptest import app, result_probs, texts

DIGITS = 1797  # images in sklearn's digits set


def test_the_outliers_view_says_how_many_of_the_run_s_images_it_lists(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    Curation(run_dir, result_probs(run_dir).argmax(1)).mark_outliers([3, 5, 8])
    at = app(own_home, monkeypatch, page="review")
    at.segmented_control(key="review_order").set_value("outliers").run()
    assert not at.exception, [e.value for e in at.exception]
    said = texts(at)
    assert f"The 200 most isolated of the run's {DIGITS:,} images (3 flagged as outliers left out)" in said
    assert re.search(r"\b200 images · page 1 of 5\b", said)  # 200 listed: 4 pages of 48, then 8
