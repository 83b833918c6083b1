"""Helpers for the AppTest tests of the app's pages (``streamlit.testing.v1.AppTest``); the
workspaces they open are the ``home`` / ``own_home`` fixtures of ``conftest.py``."""
from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from scan_core.explore.workspace import HOME_ENV

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = ("embedding", "clusters", "neighbours", "evaluation", "review", "curate_export", "data_training")


def app(home: Path, monkeypatch, run: str | None = "digits", page: str | None = None) -> AppTest:
    monkeypatch.setenv(HOME_ENV, str(home))
    at = AppTest.from_file(APP, default_timeout=60)
    if run:
        at.query_params["run"] = run
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def result_probs(run_dir: Path):
    """The probabilities ``(N, K)`` of the stage ``metrics.json`` names as the run's result, as the
    pages show them: raised to 1 / its temperature and renormalised (temperature scaling), in float32
    like the pages' (so that ties in confidence order the same way)."""
    import numpy as np
    final = json.loads((Path(run_dir) / "metrics.json").read_text())["final"]
    probs = np.load(Path(run_dir) / f"{final['stage']}_probs.npy").astype(np.float64)
    if "temperature" not in final:
        return probs
    powered = np.clip(probs, 1e-12, None) ** (1.0 / final["temperature"])
    return (powered / powered.sum(1, keepdims=True)).astype(np.float32)
