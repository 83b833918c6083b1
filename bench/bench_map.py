"""How to draw a map of a million points in the browser: the ways compared, by measurement.

On ``N`` synthetic points in 20 clusters (the map of ``bench/synthetic_run.py``), in headless
Debian Chromium (software WebGL, as on a machine without a GPU):

- **plotly scattergl, every point**: float32 typed arrays, one trace per cluster, no per-point
  text; the seconds from ``Plotly.newPlot`` to the frame drawn, and the bytes of its arrays
  (base64, as a figure travels);
- **the level of detail** (``scan_core.explore.map_points.thinned``, what the app draws): the
  seconds to thin on the server, the points kept, and the same plotly draw of them;
- **datashader** (optional: ``pip install datashader``): a categorical count per pixel of a
  1200 x 640 canvas shaded to an image, against the same count with ``numpy.bincount``;
- **Embedding Atlas** (optional: ``pip install embedding-atlas``): its Streamlit component served
  the points, and whether and when it draws.

    python bench/bench_map.py [--points 1000000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import base64
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import plotly

from scan_core.explore.map_points import thinned

ROOT = Path(__file__).resolve().parent.parent
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
CLUSTERS = 20

PAGE = """<html><body><div id="map" style="width:1200px;height:640px"></div>
<script src="plotly.min.js"></script>
<script>
function decode(text) {  // base64 -> Float32Array
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}
window.draw = async function (traces) {  // [{x, y}] base64 float32 -> ms from newPlot to the frame drawn
  const data = traces.map((t) => ({type: 'scattergl', mode: 'markers', x: decode(t.x), y: decode(t.y),
                                   marker: {size: 4, opacity: 0.75}}));
  Plotly.purge('map');
  const started = performance.now();
  await Plotly.newPlot('map', data, {dragmode: 'lasso', showlegend: false});
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return performance.now() - started;
};
</script></body></html>"""


def points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2)`` float32 positions in Gaussian blobs and ``(N,)`` cluster ids, as the synthetic run's map."""
    rng = np.random.default_rng(seed)
    places = rng.uniform(-12, 12, (CLUSTERS, 2)).astype(np.float32)
    clusters = rng.choice(CLUSTERS, n, p=rng.dirichlet(np.full(CLUSTERS, 3.0)))
    return (places[clusters] + rng.normal(0, 0.9, (n, 2))).astype(np.float32), clusters


def traces(xy: np.ndarray, clusters: np.ndarray) -> list[dict]:
    return [{"x": base64.b64encode(xy[clusters == c, 0].tobytes()).decode(),
             "y": base64.b64encode(xy[clusters == c, 1].tobytes()).decode()} for c in range(CLUSTERS)]


def summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.pstdev(values):.2f}"


def plotly_draws(browser, sets: dict[str, list[dict]], repeats: int) -> dict[str, list[float]]:
    """Seconds plotly takes to draw each set of traces, ``repeats`` times, in one page."""
    folder = Path(tempfile.mkdtemp())
    (folder / "plotly.min.js").write_bytes((Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes())
    (folder / "map.html").write_text(PAGE)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto((folder / "map.html").as_uri())
    seconds = {name: [page.evaluate("(t) => draw(t)", data) / 1000 for _ in range(repeats)] for name, data in sets.items()}
    page.close()
    return seconds


def datashader_vs_numpy(xy: np.ndarray, clusters: np.ndarray, repeats: int) -> dict[str, list[float]] | None:
    """Seconds for a categorical count per pixel of a 1200 x 640 canvas: datashader (shaded to an
    image; its first call, which compiles, not counted) and numpy.bincount (the count alone)."""
    times: dict[str, list[float]] = {"numpy": []}
    width, height = 1200, 640
    for _ in range(repeats):
        started = time.perf_counter()
        low, high = xy.min(0), xy.max(0)
        pixel = np.minimum(((xy - low) / (high - low) * [width, height]).astype(np.int64), [width - 1, height - 1])
        np.bincount((pixel[:, 1] * width + pixel[:, 0]) * CLUSTERS + clusters, minlength=width * height * CLUSTERS)
        times["numpy"].append(time.perf_counter() - started)
    if importlib.util.find_spec("datashader") is None:
        return times
    import datashader
    import datashader.transfer_functions as tf
    import pandas as pd
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "cluster": pd.Categorical(clusters)})
    canvas = datashader.Canvas(plot_width=width, plot_height=height)
    tf.shade(canvas.points(frame, "x", "y", datashader.count_cat("cluster"))).to_pil()  # compiles
    times["datashader"] = []
    for _ in range(repeats):
        started = time.perf_counter()
        tf.shade(canvas.points(frame, "x", "y", datashader.count_cat("cluster"))).to_pil()
        times["datashader"].append(time.perf_counter() - started)
    return times


ATLAS_APP = """
import numpy as np, pandas as pd, streamlit as st
from embedding_atlas.streamlit import embedding_atlas
data = np.load({path!r})
frame = pd.DataFrame({{"x": data["xy"][:, 0], "y": data["xy"][:, 1], "cluster": data["clusters"].astype(str)}})
embedding_atlas(frame, x="x", y="y", text="cluster", labels="disabled")
"""


def embedding_atlas(browser, xy: np.ndarray, clusters: np.ndarray) -> str:
    """Serve the points to Embedding Atlas's Streamlit component; what happened, in words."""
    if importlib.util.find_spec("embedding_atlas") is None:
        return "not installed (pip install embedding-atlas)"
    folder = Path(tempfile.mkdtemp())
    np.savez(folder / "points.npz", xy=xy, clusters=clusters)
    (folder / "app.py").write_text(textwrap.dedent(ATLAS_APP.format(path=str(folder / "points.npz"))))
    port = 8600 + os.getpid() % 300
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(folder / "app.py"), "--server.port", str(port),
                               "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        failures: list[str] = []
        page.on("console", lambda message: failures.append(message.text) if "failed to load" in message.text.lower() else None)
        started = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}/")
        try:
            page.frame_locator("iframe").first.locator("canvas").first.wait_for(timeout=120_000)
            return f"drew its first canvas after {time.perf_counter() - started:.2f} s"
        except Exception:
            reason = failures[0][:160] if failures else "no canvas within 120 s"
            return f"drew nothing within 120 s: {reason}"
        finally:
            page.close()
    finally:
        server.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    xy, clusters = points(args.points)
    thin_seconds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        drawn = thinned(xy, np.arange(len(xy)), None)
        thin_seconds.append(time.perf_counter() - started)
    every, detail = traces(xy, clusters), traces(xy[drawn], clusters[drawn])
    megabytes = lambda sets: sum(len(t["x"]) + len(t["y"]) for t in sets) / 1e6
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        draws = plotly_draws(browser, {"every": every, "detail": detail}, args.repeats)
        atlas = embedding_atlas(browser, xy, clusters)
        browser.close()
    counts = datashader_vs_numpy(xy, clusters, args.repeats)
    print(f"\n{args.points:,} points in {CLUSTERS} clusters, {args.repeats} repeats, {os.cpu_count()} cores, "
          "headless Chromium (software WebGL)\n")
    print("| way | server (s) | browser draw (s) | sent (MB) |\n|---|---|---|---|")
    print(f"| plotly scattergl, every point (float32 typed arrays) | – | {summary(draws['every'])} | {megabytes(every):.1f} |")
    print(f"| level of detail: {len(drawn):,} points thinned per cell, plotly scattergl | {summary(thin_seconds)} "
          f"| {summary(draws['detail'])} | {megabytes(detail):.1f} |")
    print(f"| per-pixel categorical count, numpy.bincount | {summary(counts['numpy'])} | – | – |")
    if "datashader" in counts:
        print(f"| per-pixel categorical count shaded, datashader | {summary(counts['datashader'])} | – | – |")
    else:
        print("| datashader | not installed (pip install datashader) | – | – |")
    print(f"| Embedding Atlas Streamlit component | – | {atlas} | – |")


if __name__ == "__main__":
    main()
