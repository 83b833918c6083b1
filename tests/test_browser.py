"""The app in a real browser (Debian Chromium through Playwright) against ``streamlit run``:
launch the digits demo from the page, wait for it, lasso on the embedding, rename a cluster,
export CSV. Screenshots go to ``tests/artifacts/screenshots/``."""
from __future__ import annotations

import contextlib
import csv
import importlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from apptest import result_probs

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "tests" / "artifacts" / "screenshots"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]

IN_CI = os.environ.get("CI") == "true"  # .ci/run exports it: there the browser tests must run
NO_CHROMIUM = None if Path(CHROMIUM).exists() else f"Debian chromium is not installed ({CHROMIUM})"
# a developer without Chromium skips the browser tests; in CI they fail (launch_browser)
skip_without_chromium = pytest.mark.skipif(NO_CHROMIUM is not None and not IN_CI, reason=str(NO_CHROMIUM))
playwright = importlib.import_module("playwright.sync_api") if IN_CI else pytest.importorskip("playwright.sync_api")
pytestmark = skip_without_chromium


def launch_browser(p):
    """Debian's Chromium, headless, from the Playwright context ``p``; where it is missing (then only
    in CI) the test fails, saying so."""
    if NO_CHROMIUM is not None:
        pytest.fail(f"{NO_CHROMIUM}: CI (CI=true) runs the browser tests; install it with `make setup`")
    return p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(home: Path, **env: str):
    """``streamlit run app.py`` on a free port for the workspace ``home``; yields its url."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                               cwd=ROOT, env={**os.environ, "SCAN_EXPLORER_HOME": str(home), **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    pytest.fail("streamlit did not answer its health check within 60 s")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app with a fresh workspace; yields (url, home)."""
    home = tmp_path_factory.mktemp("browser") / "home"
    with streamlit_server(home) as url:
        yield url, home


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch_browser(p)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    yield context.new_page()
    context.close()


WHERE_DRAWN = """(index) => {  // where image #index is drawn on the map, in page pixels
    const gd = document.querySelector('.stPlotlyChart .js-plotly-plot'), L = gd._fullLayout;
    const r = gd.getBoundingClientRect();
    for (const trace of gd._fullData) {
        const k = Array.from(trace.customdata, (row) => row[0]).indexOf(index);
        if (k >= 0) return {x: r.left + L._size.l + L.xaxis.l2p(trace.x[k]), y: r.top + L._size.t + L.yaxis.l2p(trace.y[k])};
    }
    return null;
}"""


def near(a: dict | None, b: dict, pixels: float = 8) -> bool:
    return a is not None and abs(a["x"] - b["x"]) <= pixels and abs(a["y"] - b["y"]) <= pixels


def shot(page, name: str) -> None:
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_idle(page, timeout: float = 30_000) -> None:
    """Until Streamlit has finished the current script run (its status widget disappears)."""
    page.wait_for_timeout(300)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=timeout)


FIRST_POINT = """() => {  // where the first image of the first trace is drawn, in page pixels
    const gd = document.querySelector('.stPlotlyChart .js-plotly-plot'), L = gd._fullLayout;
    const trace = gd._fullData[0], r = gd.getBoundingClientRect();
    return {x: r.left + L._size.l + L.xaxis.l2p(trace.x[0]), y: r.top + L._size.t + L.yaxis.l2p(trace.y[0])};
}"""


CELL_DRAWN = """([row, column]) => {  // the middle of a heatmap cell, in page pixels
    const gd = document.querySelector('.stPlotlyChart .js-plotly-plot'), L = gd._fullLayout;
    const r = gd.getBoundingClientRect();
    return {x: r.left + L._size.l + L.xaxis.l2p(column), y: r.top + L._size.t + L.yaxis.l2p(row)};
}"""


def select_box(page, low: float, high: float, timeout: float) -> None:
    """Draw a box with the map's box tool from ``low`` to ``high`` of its width and height, and wait
    for the selection's rerun to finish."""
    page.locator(".modebar-btn[data-val='select']").first.click()
    box = page.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * low, box["y"] + box["height"] * low)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * high, box["y"] + box["height"] * high, steps=10)
    page.mouse.up()
    page.get_by_text("Selection · ").wait_for(timeout=timeout)
    wait_idle(page, timeout=timeout)


def undone_renames(run: Path) -> int:
    """Rename edits of ``run`` marked undone in its curation log (read with sqlite itself)."""
    with contextlib.closing(sqlite3.connect(run / "curation.sqlite")) as db:
        return db.execute("SELECT COUNT(*) FROM edits WHERE kind = 'name_cluster' AND undone = 1").fetchone()[0]


def edits(run: Path, kind: str) -> list[dict]:
    """The payloads of ``run``'s live edits of ``kind``, oldest first (read with sqlite itself; image
    lists are little-endian int32 arrays beside the JSON)."""
    with contextlib.closing(sqlite3.connect(run / "curation.sqlite")) as db:
        rows = db.execute("SELECT payload, images, image_clusters FROM edits WHERE kind = ? AND undone = 0 ORDER BY id",
                          (kind,)).fetchall()
    payloads = []
    for text, images, clusters in rows:
        arrays = {key: np.frombuffer(blob, "<i4").tolist() for key, blob in (("images", images), ("clusters", clusters))
                  if blob is not None}
        payloads.append({**json.loads(text), **arrays})
    return payloads


TABLE_HEADER, TABLE_ROW, TABLE_ROW_MARKER = 35, 52, 15  # the Clusters table's header and row heights,
# and the middle of the row-selection boxes' column, in pixels


GALLERY_LISTENS = "() => (window.__scanGalleryClicks || {}).mounted > 0"  # ui/detail.py's click listener
PLACED_IMAGES = """() => {  // the thumbnails on the map: how many, where, and whether all lie in the ranges shown
    const gd = document.querySelector('.stPlotlyChart .js-plotly-plot'), L = gd._fullLayout;
    const images = L.images || [], x = L.xaxis.range, y = L.yaxis.range;
    const within = (v, r) => v >= Math.min(...r) && v <= Math.max(...r);
    return {count: images.length, xs: images.map((i) => i.x), ranges: [x, y],
            inside: images.length > 0 && images.every((i) => within(i.x, x) && within(i.y, y))};
}"""


def test_train_explore_curate_export(server, page, tmp_path):
    url, home = server
    page.goto(url)
    page.get_by_role("button", name="Run the digits demo").click()
    page.get_by_text("digits-demo — running").or_(page.get_by_text("digits-demo — starting")).first.wait_for(
        timeout=30_000)
    shot(page, "1-training")
    wait_idle(page)
    page.get_by_role("link", name="Clusters").first.click()  # another page while it trains: the sidebar
    page.get_by_text("is still training").first.wait_for(timeout=30_000)  # and the page follow, no click
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("digits-demo · finished").wait_for(timeout=240_000)
    assert sidebar.get_by_text("· running").count() == 0 and sidebar.get_by_text("· starting").count() == 0
    page.get_by_text("Prototypes").first.wait_for(timeout=30_000)  # and the page filled in
    page.get_by_role("link", name="Data & training").first.click()
    page.get_by_text("digits-demo — finished").wait_for(timeout=30_000)
    wait_idle(page)
    shot(page, "2-finished")
    run = (home / "runs" / "digits-demo")
    assert (run / "projection.npy").exists() and (run / "selflabel_probs.npy").exists()

    page.goto(f"{url}/embedding?run=digits-demo")
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for(timeout=30_000)
    wait_idle(page)
    point = page.evaluate(FIRST_POINT)
    page.mouse.move(point["x"] - 3, point["y"] - 3)
    page.mouse.move(point["x"], point["y"], steps=3)
    thumb = page.locator("#scan-hover-thumb")
    thumb.wait_for(state="visible", timeout=10_000)
    hovered = int(thumb.get_attribute("data-index"))
    assert near(page.evaluate(WHERE_DRAWN, hovered), point)  # the image under the pointer (points overlap)
    assert "data:image/png" in thumb.evaluate("e => e.style.backgroundImage")
    shot(page, "3-embedding-hover")
    select_box(page, 0.2, 0.8, timeout=30_000)
    clear = page.get_by_role("button", name="Clear selection")  # its whole label shows
    assert clear.evaluate("b => { const t = b.querySelector('p') || b; return t.scrollWidth <= t.clientWidth + 1; }")
    selected = int(page.get_by_text("Selection · ").inner_text().split("·")[1].split()[0].replace(",", ""))
    drawn = page.evaluate("() => document.querySelector('.stPlotlyChart .js-plotly-plot')._fullLayout.selections[0]")
    xy = np.load(run / "projection.npy").astype(np.float32)  # the box's images, by their map coordinates
    inside = np.flatnonzero((xy[:, 0] >= min(drawn["x0"], drawn["x1"])) & (xy[:, 0] <= max(drawn["x0"], drawn["x1"]))
                            & (xy[:, 1] >= min(drawn["y0"], drawn["y1"])) & (xy[:, 1] <= max(drawn["y0"], drawn["y1"])))
    assert selected == len(inside) > 100
    page.locator(".scan-gallery img").first.wait_for(timeout=30_000)  # the gallery follows the count in the page
    shown = [int(alt.lstrip("#")) for alt in page.locator(".scan-gallery img").evaluate_all("e => e.map(i => i.alt)")]
    assert len(shown) == 100 and set(shown) <= set(inside.tolist())
    shot(page, "3-embedding-selection")  # after the hover shot: names sort in order

    ids = np.load(run / "images" / "ids.npy")  # the detail view: a click on a thumbnail, arrows, keys, Esc
    base = result_probs(run).argmax(1)
    page.wait_for_function(GALLERY_LISTENS)
    page.locator(".scan-gallery figure").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("heading", name=str(ids[shown[0]]), exact=True).wait_for(timeout=30_000)
    wait_idle(page)
    page.keyboard.press("ArrowRight")
    dialog.get_by_role("heading", name=str(ids[shown[1]]), exact=True).wait_for(timeout=30_000)
    shot(page, "3-detail-view")
    wait_idle(page)
    page.keyboard.press("a")  # A accepts the image where it is and goes on
    dialog.get_by_role("heading", name=str(ids[shown[2]]), exact=True).wait_for(timeout=30_000)
    assert edits(run, "accept") == [{"images": [shown[1]], "clusters": [int(base[shown[1]])]}]
    wait_idle(page)
    target = 1 if base[shown[2]] != 1 else 2  # a number key moves it to that cluster and goes on
    page.keyboard.press(str(target))
    dialog.get_by_role("heading", name=str(ids[shown[3]]), exact=True).wait_for(timeout=30_000)
    assert edits(run, "move") == [{"images": [shown[2]], "cluster": target}]
    wait_idle(page)
    label = dialog.get_by_label("Label")  # the previous image's box may linger a moment after a rerun
    playwright.expect(label).to_have_count(1, timeout=30_000)
    label.press_sequentially("a1")  # keys typed into a box are text, not actions
    page.wait_for_timeout(1000)
    assert len(edits(run, "accept")) == 1 and len(edits(run, "move")) == 1
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden", timeout=30_000)
    wait_idle(page)

    plot.scroll_into_view_if_needed()  # the dialog left the page scrolled: find the map again
    box = page.locator(".nsewdrag").first.bounding_box()
    page.mouse.dblclick(box["x"] + 5, box["y"] + 5)  # a double click clears the selection
    page.get_by_text("Select points on the map").wait_for(timeout=30_000)
    assert page.get_by_text("Selection · ").count() == 0
    wait_idle(page)
    point = page.evaluate(FIRST_POINT)  # the map was redrawn (no kept selection): which image is on top
    page.mouse.move(point["x"] - 3, point["y"] - 3)
    page.mouse.click(point["x"], point["y"])  # a click selects the one image under the pointer
    page.get_by_text("Selection · 1 image").wait_for(timeout=30_000)
    page.locator(".scan-gallery img").first.wait_for(timeout=30_000)
    alts = page.locator(".scan-gallery img").evaluate_all("e => e.map(i => i.alt)")
    # the clicked image is drawn where the click was (points overlap); both measured now, whatever the scroll
    assert len(alts) == 1 and near(page.evaluate(WHERE_DRAWN, int(alts[0][1:])), page.evaluate(FIRST_POINT))
    wait_idle(page)

    find = page.get_by_placeholder("id, file name or #index")  # find an image: it opens
    find.fill("#5")
    find.press("Enter")
    page.get_by_role("dialog").get_by_role("heading", name=str(ids[5]), exact=True).wait_for(timeout=30_000)
    page.keyboard.press("Escape")
    page.get_by_role("dialog").wait_for(state="hidden", timeout=30_000)
    wait_idle(page)
    page.get_by_text("Filter and display").click()  # a filter narrows the map: only cluster 3 stays
    clusters = page.get_by_role("combobox", name="Clusters")
    clusters.wait_for(timeout=30_000)
    wait_idle(page)
    clusters.click()
    option = page.get_by_role("option", name="cluster 3", exact=True)
    if not option.is_visible():  # the list closed again while the page reran: open it once more
        wait_idle(page)
        clusters.click()
    option.click()
    page.keyboard.press("Escape")
    members = int((base == 3).sum()) - int(base[shown[2]] == 3)  # less the image moved by its number key
    page.get_by_text(f"{members:,} of 1,797 images").wait_for(timeout=30_000)
    wait_idle(page)
    shot(page, "3-embedding-filter")

    page.mouse.move(point["x"] - 3, point["y"] - 3)  # a hovered image does not follow to another page
    page.get_by_role("link", name="Clusters").first.click()
    page.get_by_role("heading", name="Clusters").first.wait_for(timeout=30_000)
    assert not page.locator("#scan-hover-thumb").is_visible()
    wait_idle(page)

    page.goto(f"{url}/clusters?run=digits-demo")
    name = page.get_by_label("Name", exact=True)
    name.wait_for(timeout=30_000)
    name.fill("my first cluster")
    page.get_by_role("button", name="Save name").click()
    page.get_by_role("heading", name="0 · my first cluster").wait_for(timeout=30_000)
    wait_idle(page)
    shot(page, "4-clusters")
    table = page.locator("[data-testid='stDataFrame']").first  # a click on a row's box opens its cluster
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    assert box["height"] >= TABLE_HEADER + 10 * TABLE_ROW  # all ten clusters without scrolling
    page.mouse.click(box["x"] + TABLE_ROW_MARKER, box["y"] + TABLE_HEADER + 4.5 * TABLE_ROW)
    shot(page, "4-clusters-row")
    page.get_by_role("heading", name="cluster 4", exact=True).wait_for(timeout=30_000)
    wait_idle(page)

    page.goto(f"{url}/evaluation?run=digits-demo")  # a click on a confusion cell opens its images
    page.locator(".stPlotlyChart .js-plotly-plot").first.wait_for(timeout=30_000)
    wait_idle(page)
    labels = np.load(run / "images" / "labels.npy")
    table = np.zeros((10, 10), dtype=int)
    np.add.at(table, (base, labels), 1)
    matched, classes = linear_sum_assignment(-table)  # rows are drawn in the order of their classes
    cluster = int(matched[np.flatnonzero(classes == 2)[0]])
    page.mouse.click(**page.evaluate(CELL_DRAWN, [2, 2]))
    page.locator(f".scan-gallery figure[data-gallery='cell_{cluster}_2'] img").first.wait_for(timeout=30_000)
    assert page.locator(f".scan-gallery figure[data-gallery='cell_{cluster}_2'] img").count() == min(100, table[cluster, 2])
    shot(page, "4-evaluation-cell")

    page.goto(f"{url}/curate_export?run=digits-demo")
    page.get_by_role("tab", name="Export").click()
    page.get_by_role("button", name="CSV", exact=True).wait_for(timeout=30_000)
    wait_idle(page)  # a click while the page reruns can be lost
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="CSV", exact=True).click()
    target = tmp_path / "labels.csv"
    download.value.save_as(target)
    shot(page, "5-export")
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 1797
    assert {"id", "path", "cluster", "confidence", "curated_label"} <= set(rows[0])
    assert sum(r["curated_label"] == "my first cluster" for r in rows) == sum(r["cluster"] == "0" for r in rows) > 0

    page.get_by_role("tab", name="History").click()  # Ctrl+Z undoes the rename
    wait_idle(page)
    page.keyboard.press("Control+z")
    deadline = time.time() + 30  # the toast is brief: read the edit log itself
    while not undone_renames(run) and time.time() < deadline:
        time.sleep(0.2)
    assert undone_renames(run) == 1

    page.goto(f"{url}/clusters?run=digits-demo")  # how many clusters the run's features suggest, and why
    page.get_by_text("How many clusters would this run suggest?").click()
    page.get_by_role("button", name="Suggest K from this run's features").click()
    page.get_by_text("Suggested K = ").wait_for(timeout=60_000)
    wait_idle(page)
    shot(page, "6-suggest-k")

    page.goto(f"{url}/review?run=digits-demo")  # accept a page of the review queue, then refine from it
    accept = page.get_by_role("button", name=re.compile(r"Accept these \d+ where they are"))
    accept.wait_for(timeout=30_000)
    wait_idle(page)
    accept.click()
    page.get_by_text("Left to review").wait_for(timeout=30_000)
    deadline = time.time() + 30
    while len(edits(run, "accept")) < 2 and time.time() < deadline:
        time.sleep(0.2)
    wait_idle(page)
    refine = page.get_by_role("button", name="Refine with my labels")
    refine.scroll_into_view_if_needed()
    refine.click()
    page.get_by_text("Refining:").wait_for(timeout=30_000)
    deadline = time.time() + 240
    while json.loads((run / "metrics.json").read_text()).get("final", {}).get("stage") != "refine" \
            and time.time() < deadline:
        time.sleep(1)
    reviewed = {i for kind in ("accept", "move") for e in edits(run, kind) for i in e["images"]}
    assert json.loads((run / "metrics.json").read_text())["refine"]["labels"] == len(reviewed) > 48
    page.goto(f"{url}/evaluation?run=digits-demo")
    page.get_by_text("refined with your labels").first.wait_for(state="attached", timeout=60_000)  # a grid cell
    shot(page, "6-refined")
    for path, heading in (("embedding", "Embedding"), ("clusters", "Clusters"), ("neighbours", "Neighbours"),
                          ("review", "Review"), ("curate_export", "Curate & export"), ("", "Data & training")):
        page.goto(f"{url}/{path}?run=digits-demo")  # every page after the refine, Data & training too
        page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
        wait_idle(page, 60_000)
        assert page.locator("[data-testid='stException']").count() == 0, path
    page.get_by_role("button", name="Start training").wait_for(timeout=30_000)
    shot(page, "7-data-after-refine")

    page.goto(f"{url}/clusters?run=digits-demo")  # Ctrl-click picks thumbnails; they move in one edit
    page.get_by_text("Members by confidence").wait_for(timeout=30_000)
    wait_idle(page)
    grid = page.locator(".scan-gallery").nth(2)  # the members (after the two prototype grids)
    picks = [int(grid.locator("figure").nth(k).get_attribute("data-index")) for k in (3, 4, 5)]
    page.wait_for_function(GALLERY_LISTENS)  # a click before the page's listener is mounted goes nowhere
    for k in (3, 4, 5):
        grid.locator("figure").nth(k).click(modifiers=["Control"])
        page.get_by_text(f"{k - 2} image").first.wait_for(timeout=30_000)
        wait_idle(page)
    box = page.get_by_label("Move them to cluster")
    box.fill("7")
    box.press("Enter")
    deadline = time.time() + 30
    while not any(sorted(e["images"]) == sorted(picks) for e in edits(run, "move")) and time.time() < deadline:
        time.sleep(0.2)
    assert [e["cluster"] for e in edits(run, "move") if sorted(e["images"]) == sorted(picks)] == [7]
    shot(page, "8-picked-moved")

    page.goto(f"{url}/?run=digits-demo")  # a second run, compared with the first, then deleted
    page.get_by_role("button", name="Start training").wait_for(timeout=30_000)
    wait_idle(page)
    page.get_by_role("textbox", name="Run name").fill("second")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("second — finished").wait_for(timeout=300_000)
    wait_idle(page)
    page.get_by_text("Compare two runs").click()
    page.get_by_text("Clusters agree (ARI, same images)").wait_for(timeout=30_000)
    shot(page, "9-compare")
    wait_idle(page)
    page.get_by_text("Rename or delete a run").click()
    wait_idle(page)
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("button", name="Confirm delete of second").click()  # the run on show comes first
    page.get_by_text("Deleted second", exact=False).wait_for(timeout=30_000)
    assert len(list((home / "runs").iterdir())) == 1 and len(list((home / "trash").iterdir())) == 1


def test_hover_thumbnails_come_on_demand_for_a_big_run(tmp_path, browser):
    """With the whole-sheet limit at 0 a digits run counts as big: hovering a point asks the server
    for the sheet of its neighbourhood on the map, and the thumbnail shown is the hovered image's.
    Then the thumbnails view: images spread over the map, and after a scroll zoom those of the part
    on screen."""
    from scan_core.data.images import ImageSet
    from scan_core.engine.run import train_run
    from scan_core.explore.workspace import Workspace
    ws = Workspace.create(tmp_path / "home")
    train_run(ws.runs / "digits", "digits", 10, preset="digits", show_bar=False)
    thumbnails = np.asarray(ImageSet.load(ws.runs / "digits" / "images").images)
    with streamlit_server(ws.home, SCAN_EXPLORER_HOVER_SHEET_PIXELS="0") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/embedding?run=digits")
        page.locator(".js-plotly-plot .gl-container canvas").first.wait_for(timeout=60_000)
        wait_idle(page)
        assert page.get_by_text("load on the first hover there").count() == 1
        for trace in (0, 5):
            spot = page.evaluate("""(k) => {
                const gd = document.querySelector('.stPlotlyChart .js-plotly-plot'), L = gd._fullLayout;
                const trace = gd._fullData[k], r = gd.getBoundingClientRect();
                return {x: r.left + L._size.l + L.xaxis.l2p(trace.x[0]), y: r.top + L._size.t + L.yaxis.l2p(trace.y[0])};
            }""", trace)
            page.mouse.move(spot["x"] - 3, spot["y"] - 3)
            page.mouse.move(spot["x"], spot["y"], steps=3)
            page.wait_for_function("() => document.getElementById('scan-hover-thumb')?.dataset.index", timeout=15_000)
            shown = page.evaluate("""() => {  // the image the tooltip names, and the pixels it shows from its sheet
                const tip = document.getElementById('scan-hover-thumb'), size = parseFloat(tip.style.width);
                const [x, y] = tip.style.backgroundPosition.split(' ').map((v) => -parseFloat(v) / size);
                const [w] = tip.style.backgroundSize.split(' ').map((v) => parseFloat(v) / size);
                const index = Number(tip.dataset.index), image = new Image();
                image.src = tip.style.backgroundImage.slice(5, -2);
                return new Promise((done) => { image.onload = () => {
                    const side = image.width / w, canvas = document.createElement('canvas');
                    canvas.width = canvas.height = side;
                    const context = canvas.getContext('2d');
                    context.drawImage(image, x * side, y * side, side, side, 0, 0, side, side);
                    done({index, pixels: Array.from(context.getImageData(0, 0, side, side).data.filter((_, i) => i % 4 === 0))});
                }; });
            }""")
            assert near(page.evaluate(WHERE_DRAWN, shown["index"]), spot)  # an image under the pointer
            assert np.array_equal(np.array(shown["pixels"], dtype=np.uint8), thumbnails[shown["index"]].ravel())
            shot(page, f"3-embedding-hover-on-demand-{trace}")
            page.mouse.move(5, 5)
            page.wait_for_function("() => document.getElementById('scan-hover-thumb').style.display === 'none'")
        page.get_by_text("thumbnails", exact=True).click()  # the images spread over the map
        page.wait_for_function(f"() => ({PLACED_IMAGES})().count > 20", timeout=30_000)  # digits: ~40 cells hold images
        page.wait_for_function("() => document.querySelectorAll('.stPlotlyChart .layer-above image').length > 20")
        wait_idle(page)
        shot(page, "3-embedding-thumbnails")
        whole = page.evaluate(PLACED_IMAGES)
        box = page.locator(".nsewdrag").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        for _ in range(4):
            page.mouse.wheel(0, -300)  # scroll zoom: the server draws the images of the part on screen
            page.wait_for_timeout(150)
        page.wait_for_function(f"() => ({PLACED_IMAGES})().ranges[0][0] > {whole['ranges'][0][0]}", timeout=30_000)
        page.wait_for_timeout(500)
        wait_idle(page)
        page.wait_for_function(f"() => ({PLACED_IMAGES})().inside", timeout=30_000)
        zoomed = page.evaluate(PLACED_IMAGES)
        assert zoomed["count"] >= 1 and zoomed["xs"] != whole["xs"]
        shot(page, "3-embedding-thumbnails-zoomed")
        page.close()


def test_a_200k_run_opens_and_selects_at_a_level_of_detail(tmp_path, browser):
    """A synthetic run of 200,000 images (``bench/synthetic_run.py``): the map draws at most its
    limit of points (one per grid cell), a box drawn in the browser selects every image inside it
    (counted here from the map coordinates, drawn or not), the gallery fills, a hover shows its
    image, and every other page opens."""
    import importlib.util

    from scan_core.explore.workspace import Workspace
    spec = importlib.util.spec_from_file_location("synthetic_run", ROOT / "bench" / "synthetic_run.py")
    synthetic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synthetic)
    ws = Workspace.create(tmp_path / "home")
    run = synthetic.write_run(ws.runs / "big", 200_000)
    xy = np.load(run / "projection.npy")
    with streamlit_server(ws.home) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/embedding?run=big")
        page.locator(".js-plotly-plot .gl-container canvas").first.wait_for(timeout=120_000)
        wait_idle(page, timeout=120_000)
        drawn = page.evaluate("""() => document.querySelector('.stPlotlyChart .js-plotly-plot')._fullData
            .filter((t) => t.type === 'scattergl').reduce((sum, t) => sum + t.x.length, 0)""")
        assert 1_000 < drawn <= 50_000
        spot = page.evaluate("""() => {  // the first point of the first point trace (the density lies under them)
            const gd = document.querySelector('.stPlotlyChart .js-plotly-plot'), L = gd._fullLayout;
            const trace = gd._fullData.find((t) => t.type === 'scattergl'), r = gd.getBoundingClientRect();
            return {x: r.left + L._size.l + L.xaxis.l2p(trace.x[0]), y: r.top + L._size.t + L.yaxis.l2p(trace.y[0])};
        }""")
        page.mouse.move(spot["x"] - 3, spot["y"] - 3)
        page.mouse.move(spot["x"], spot["y"], steps=3)
        page.wait_for_function("() => document.getElementById('scan-hover-thumb')?.dataset.index", timeout=30_000)
        page.mouse.move(5, 5)
        select_box(page, 0.3, 0.7, timeout=60_000)
        selected = int(page.get_by_text("Selection · ").inner_text().split("·")[1].split()[0].replace(",", ""))
        region = page.evaluate("() => document.querySelector('.stPlotlyChart .js-plotly-plot')._fullLayout.selections[0]")
        inside = np.flatnonzero((xy[:, 0] >= min(region["x0"], region["x1"])) & (xy[:, 0] <= max(region["x0"], region["x1"]))
                                & (xy[:, 1] >= min(region["y0"], region["y1"])) & (xy[:, 1] <= max(region["y0"], region["y1"])))
        assert selected == len(inside) > drawn  # every image in the box, not only those drawn
        page.wait_for_function("() => document.querySelectorAll('.scan-gallery img').length >= 100", timeout=60_000)
        shown = [int(alt.lstrip("#")) for alt in page.locator(".scan-gallery img").evaluate_all("e => e.map(i => i.alt)")]
        assert set(shown) <= set(inside.tolist())
        shot(page, "7-embedding-200k")
        for name in ("clusters", "neighbours", "review", "evaluation", "curate_export"):
            page.goto(f"{url}/{name}?run=big")
            page.locator("h1").first.wait_for(timeout=120_000)
            wait_idle(page, timeout=120_000)
            assert page.locator("[data-testid='stException']").count() == 0, name
        page.close()


def test_the_detail_views_number_keys_show_whole_cluster_names(own_home, browser):
    """Ten named clusters, long names and short: every number-key button of the detail view shows
    its cluster's whole name (its text neither cut by an ellipsis nor hidden past the button's box)."""
    from scan_core.explore.curation import Curation
    run_dir = own_home / "runs" / "digits"
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    names = {c: ("one" if c == 3 else f"ones {c}" if c % 2 else f"portation of heavy goods {c}") for c in range(10)}
    for cluster, name in names.items():
        store.name_cluster(cluster, name)
    with streamlit_server(own_home) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/clusters?run=digits")
        page.get_by_text("Members by confidence").wait_for(timeout=60_000)
        wait_idle(page)
        page.wait_for_function(GALLERY_LISTENS)
        page.locator(".scan-gallery figure").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Move to cluster (its number key)").wait_for(timeout=30_000)
        wait_idle(page)
        keys = dialog.get_by_role("button", name=re.compile(r"^\d · "))
        assert keys.count() == 9  # every cluster but the image's own
        shot(page, "3-detail-number-keys")
        for k in range(keys.count()):
            fits = keys.nth(k).evaluate("""(b) => {  // the label's text, and whether all of it is in view
                const t = b.querySelector('p') || b;
                return {text: t.innerText.replace(/\\s+/g, ' ').trim(),
                        fits: t.scrollWidth <= t.clientWidth + 1 && t.scrollHeight <= t.clientHeight + 1
                              && b.scrollWidth <= b.clientWidth + 1 && b.scrollHeight <= b.clientHeight + 1};
            }""")
            cluster = int(fits["text"].split(" · ")[0])
            assert fits == {"text": f"{cluster} · {names[cluster]}", "fits": True}
        page.close()


def test_picks_are_sent_together_and_their_bar_stays_in_view(home, browser):
    """Ctrl-click, Shift-click (the range from the last pick) and a Ctrl-click that unpicks, made
    quickly, reach the server as one message; the picks' bar is in view beside the gallery."""
    with streamlit_server(home) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/clusters?run=digits")
        page.get_by_text("Members by confidence").wait_for(timeout=60_000)
        wait_idle(page)
        page.wait_for_function(GALLERY_LISTENS)
        page.evaluate("""() => {  // a log of what the listener sends
            const bridge = window.__scanGalleryClicks, send = bridge.send;
            bridge.log = [];
            bridge.send = (name, value) => { bridge.log.push([name, value]); return send(name, value); };
        }""")
        grid = page.locator(".scan-gallery").nth(2)  # the members (after the two prototype grids)
        figures = grid.locator("figure")
        figures.nth(5).wait_for(timeout=30_000)  # the grid drawn (on a busy machine it comes late)
        order = [int(i) for i in figures.evaluate_all("e => e.map(f => f.dataset.index)")]
        figures.nth(1).scroll_into_view_if_needed()
        figures.nth(1).click(modifiers=["Control"])
        figures.nth(5).click(modifiers=["Shift"])  # 1 to 5
        figures.nth(3).click(modifiers=["Control"])  # 3 unpicked again
        page.get_by_text("4 images picked").wait_for(timeout=30_000)
        wait_idle(page)
        sent = page.evaluate("() => window.__scanGalleryClicks.log")
        assert [name for name, _ in sent] == ["picked"]
        expected = [order[k] for k in (1, 2, 4, 5)]
        outlined = grid.locator("figure.scan-picked").evaluate_all("e => e.map(f => Number(f.dataset.index))")
        assert sorted(outlined) == sorted(expected)
        figures.nth(5).scroll_into_view_if_needed()
        bar = page.get_by_text("4 images picked").bounding_box()
        assert bar["y"] >= 0 and bar["y"] + bar["height"] <= 900  # in view, wherever the gallery is
        shot(page, "8-picks-bar")
        page.close()


def test_start_brings_the_progress_card_into_view(tmp_path, browser):
    """Start is at the bottom of the New run form; the new run's progress card is drawn at the top of
    the page: after the click the card is on screen (then the run is cancelled)."""
    from scan_core.explore import jobs
    from scan_core.explore.workspace import Workspace
    ws = Workspace.create(tmp_path / "home")
    with streamlit_server(ws.home) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        start = page.get_by_role("button", name="Start training")
        start.wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_role("textbox", name="Run name").fill("scrolled")
        start.scroll_into_view_if_needed()
        assert page.locator(".stMain").evaluate("e => e.scrollTop") > 0  # the page is scrolled down to Start
        start.click()
        try:
            page.get_by_role("heading", name=re.compile(r"scrolled — (starting|running)")).wait_for(timeout=60_000)
            page.wait_for_function("""() => {  // the card's top in the window
                const card = document.querySelector('.st-key-progress_card');
                if (!card) return false;
                const box = card.getBoundingClientRect();
                return box.top > -2 && box.top < window.innerHeight / 2;
            }""", timeout=15_000)
            shot(page, "1-started-progress-in-view")
        finally:
            deadline = time.time() + 120
            while jobs.active_run(ws) is not None and time.time() < deadline:  # the job stops after its step
                jobs.cancel(ws, ws.runs / "scrolled")
                time.sleep(1)
            page.close()
        assert jobs.active_run(ws) is None
