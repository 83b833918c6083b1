"""What the pages say and show about what they draw (AppTest): how many of the run's images a
capped list holds; a chart whose toolbar would hide its axis has none."""
from __future__ import annotations

import json
import re

from scan_core.explore.curation import Curation
from ui.suggest import SEPARATION

from apptest import app, button, result_probs, texts

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


def test_the_why_k_chart_has_no_toolbar_over_its_axes(home, monkeypatch):
    at = app(home, monkeypatch)
    button(at, "Suggest").click().run()
    assert not at.exception, [e.value for e in at.exception]
    charts = [chart for chart in at.get("plotly_chart")
              if any(t.get("name") == SEPARATION for t in json.loads(chart.proto.spec)["data"])]
    assert len(charts) == 1 and json.loads(charts[0].proto.config)["displayModeBar"] is False


def test_the_evaluation_page_puts_acc_beside_chance_and_k_means(home, monkeypatch):
    at = app(home, monkeypatch, page="evaluation")
    # digits' largest class, 3, has 183 of the 1,797 images: 183 / 1797 = 0.1018
    kmeans = json.loads((home / "runs" / "digits" / "metrics.json").read_text())["pretext"]["acc"]
    assert ("calling every image the largest class (chance) scores **0.102**; k-means on the run's features alone "
            f"scores **{kmeans:.3f}**") in texts(at)
