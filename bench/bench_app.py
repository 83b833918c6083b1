"""App speed in a real browser: a 70k-image run (Fashion-MNIST), or a synthetic run of any size.

Builds the run once (``tiny`` preset + UMAP, into ``bench/out/app-home``; the first UMAP is not
timed), or with ``--images N`` writes a finished run of N images without training
(``bench/synthetic_run.py``), starts ``streamlit run app.py`` and measures with Playwright + Debian
Chromium:

- Embedding page: navigation -> the WebGL scatter drawn and the script run finished;
- a gallery page of 100 thumbnails: release of a box selection on the map -> every image of the page
  loaded (and, on the way, -> the selection's count shown: the page's rerun has answered);
- a hover thumbnail: the pointer on a point of a region not hovered before -> its image shown (a
  big run sends thumbnails on demand, a sheet of the hovered neighbourhood);
- Clusters, Neighbours, Review, Evaluation, Curate & export: navigation -> finished;
- the server's peak resident memory (``VmHWM``), after the timings (one session) and after
  ``--sessions`` browser sessions have each opened Embedding and selected a box;
- the bytes the page received over Streamlit's websocket to open Embedding (a fresh page load) and
  for the box selection's rerun.

    python bench/bench_app.py [--repeats 3] [--images N]

With ``--images`` it ends with one line ``images=N embedding_ready_s=X gallery_s=Y server_rss_mb=Z``
to compare across versions.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from scan_core.engine.run import train_run
from scan_core.explore.workspace import HOME_ENV, Workspace

ROOT = Path(__file__).resolve().parent.parent

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
RUN = "fashion-70k"
PAGES = ("clusters", "neighbours", "review", "evaluation", "curate_export")


def build_run(home: Path) -> None:
    ws = Workspace.create(home)
    run_dir = ws.runs / RUN
    started = time.time()
    train_run(run_dir, "fashion-mnist", 10, preset="tiny", show_bar=False, umap=True)
    print(f"run ready in {time.time() - started:.0f} s ({run_dir})")


def serve(home: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                               cwd=ROOT, env={**os.environ, HOME_ENV: str(home)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("streamlit did not start")


def idle(page) -> None:
    page.wait_for_timeout(100)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=120_000)


WHERE_DRAWN = """(k) => {  // a point of the k-th point trace (cycling) in the window, in page pixels
    const gd = document.querySelector('.stPlotlyChart .js-plotly-plot'), L = gd._fullLayout;
    const points = gd._fullData.filter((t) => t.type === 'scattergl');  // not the density under them
    const trace = points[k % points.length], r = gd.getBoundingClientRect();
    for (let j = 0; j < trace.x.length; j++) {
        const i = (k * 7919 + j * 104729) % trace.x.length;
        const x = r.left + L._size.l + L.xaxis.l2p(trace.x[i]), y = r.top + L._size.t + L.yaxis.l2p(trace.y[i]);
        if (y > 10 && y < window.innerHeight - 10) return {x, y};
    }
}"""


def hover_thumbnail(page, k: int) -> float:
    spot = page.evaluate(WHERE_DRAWN, k)
    page.mouse.move(spot["x"] - 4, spot["y"] - 4)
    page.wait_for_timeout(100)
    started = time.perf_counter()
    page.mouse.move(spot["x"], spot["y"])
    page.wait_for_function("() => document.getElementById('scan-hover-thumb')?.dataset.index", timeout=60_000)
    seconds = time.perf_counter() - started
    page.mouse.move(2, 2)
    page.wait_for_function("() => document.getElementById('scan-hover-thumb')?.style.display === 'none'")
    return seconds


class Received:
    """Bytes the page receives over Streamlit's websocket (every script run's output)."""

    def __init__(self, page):
        self.bytes = 0
        page.on("websocket", lambda socket: socket.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        self.bytes += len(payload)


def box_select(page, shift: float) -> tuple[float, float]:
    """Draw a box over 40% of the map's width and height (moved right by ``shift`` of its width);
    seconds from its release to the selection's count shown, and to a gallery page all loaded."""
    page.locator(".modebar-btn[data-val='select']").first.click()
    box = page.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * (0.25 + shift), box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (0.65 + shift), box["y"] + box["height"] * 0.7, steps=5)
    started = time.perf_counter()  # from the release of the box, the user's gesture done
    page.mouse.up()
    page.get_by_text("Selection · ").wait_for(timeout=120_000)  # the rerun's first output reached the page
    answered = time.perf_counter() - started
    page.wait_for_function("() => { const imgs = document.querySelectorAll(\".scan-gallery img\");"
                           " return imgs.length >= 100 && [...imgs].every(i => i.complete && i.naturalWidth > 0); }",
                           timeout=120_000)
    gallery = time.perf_counter() - started
    idle(page)
    return answered, gallery


def open_sessions(browser, url: str, run: str, count: int) -> list:
    """``count`` more browser sessions, each with the Embedding page open and a box selected."""
    pages = []
    for k in range(count):
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(f"{url}/embedding?run={run}")
        page.locator(".js-plotly-plot .gl-container canvas").first.wait_for(timeout=120_000)
        idle(page)
        box_select(page, 0.05 * k)
        pages.append(page)
    return pages


def measure(page, url: str, run: str, shift: float, received: Received) -> dict[str, float]:
    started, before = time.perf_counter(), received.bytes
    page.goto(f"{url}/embedding?run={run}")
    page.locator(".js-plotly-plot .gl-container canvas").first.wait_for(timeout=120_000)
    idle(page)
    embedding = time.perf_counter() - started
    embedding_mb = (received.bytes - before) / 1e6
    hover = max(hover_thumbnail(page, k) for k in (1, 4, 7))  # three regions, each its first hover
    idle(page)

    before = received.bytes
    answered, gallery = box_select(page, shift)
    selection_mb = (received.bytes - before) / 1e6
    count = page.locator(".scan-gallery img").count()

    timings = {"embedding": embedding, "hover": hover, "answered": answered, "gallery": gallery, "images": count,
               "embedding_mb": embedding_mb, "selection_mb": selection_mb}
    for name in PAGES:
        started = time.perf_counter()
        page.goto(f"{url}/{name}?run={run}")
        page.locator("h1").first.wait_for(timeout=300_000)
        idle(page)
        timings[name] = time.perf_counter() - started
    return timings


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of process ``pid`` (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=None, help="a synthetic run of this many images")
    parser.add_argument("--sessions", type=int, default=3, help="browser sessions open at the end, for the RSS")
    parser.add_argument("--home", type=Path, default=ROOT / "bench" / "out" / "app-home")
    args = parser.parse_args()
    run = RUN if args.images is None else f"synthetic-{args.images}"
    if not (args.home / "runs" / run / "projection.npy").exists():
        if args.images is None:
            build_run(args.home)
        else:
            sys.path.insert(0, str(ROOT / "bench"))
            from synthetic_run import write_run
            write_run(Workspace.create(args.home).runs / run, args.images)
    from playwright.sync_api import sync_playwright
    process, url = serve(args.home)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            received = Received(page)
            page.goto(f"{url}/embedding?run={run}")  # warm the server's caches once, untimed
            page.locator(".js-plotly-plot").first.wait_for(timeout=600_000)
            idle(page)
            for repeat in range(args.repeats):
                rows.append(measure(page, url, run, shift=0.1 * repeat / max(args.repeats - 1, 1), received=received))
            rss = peak_rss_mb(process.pid)
            page.goto(f"{url}/embedding?run={run}")  # this session back on the map, and two more
            idle(page)
            open_sessions(browser, url, run, args.sessions - 1)
            rss_sessions = peak_rss_mb(process.pid)
            browser.close()
    finally:
        process.terminate()
    size = args.images or 70_000
    print(f"\n{size:,} images, {args.repeats} repeats, {os.cpu_count()} cores, headless Chromium\n")
    print("| measurement | mean (s) | max (s) | target (s) |\n|---|---|---|---|")
    for key, title, target in (("embedding", "Embedding page ready after navigation", 3.0),
                               ("hover", "hover thumbnail, first hover in a region (slowest of 3)", None),
                               ("answered", "box selection -> its count shown (the rerun answered)", None),
                               ("gallery", f"gallery page of {rows[0]['images']} thumbnails after a box selection", 1.0),
                               *((name, f"{name} page ready after navigation", 2.0) for name in PAGES)):
        values = [row[key] for row in rows]
        print(f"| {title} | {sum(values) / len(values):.2f} | {max(values):.2f} | {target or '–'} |")
    print(f"\nserver peak RSS: {rss:,.0f} MB with one session, {rss_sessions:,.0f} MB with {args.sessions} "
          "sessions each with a box selected on Embedding")
    print("received over the websocket (MB): " + "; ".join(
        f"{key} " + " ".join(f"{row[key]:.2f}" for row in rows) for key in ("embedding_mb", "selection_mb")))
    print("per repeat: " + "; ".join(f"{key} " + " ".join(f"{row[key]:.2f}" for row in rows)
                                    for key in ("embedding", "hover", "answered", "gallery", *PAGES)))
    mean = lambda key: sum(row[key] for row in rows) / len(rows)
    print(f"images={size} embedding_ready_s={mean('embedding'):.2f} gallery_s={mean('gallery'):.2f} "
          f"server_rss_mb={rss_sessions:.0f}")


if __name__ == "__main__":
    main()
