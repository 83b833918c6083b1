"""The app in a real browser (Debian Chromium through Playwright) against ``streamlit run``:
launch the digits demo from the page, wait for it, lasso on the embedding, rename a cluster,
export CSV. Screenshots go to ``tests/artifacts/screenshots/``."""
from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "tests" / "artifacts" / "screenshots"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``streamlit run app.py`` on a free port with a fresh workspace; yields (url, home)."""
    home = tmp_path_factory.mktemp("browser") / "home"
    port = free_port()
    env = {**os.environ, "SCAN_EXPLORER_HOME": str(home)}
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            break
        except OSError:
            if time.time() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("streamlit did not answer its health check within 60 s")
            time.sleep(0.5)
    yield url, home
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        yield context.new_page()
        browser.close()


def shot(page, name: str) -> None:
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_idle(page, timeout: float = 30_000) -> None:
    """Until Streamlit has finished the current script run (its status widget disappears)."""
    page.wait_for_timeout(300)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=timeout)


def test_train_explore_curate_export(server, page, tmp_path):
    url, home = server
    page.goto(url)
    page.get_by_role("button", name="Run the digits demo").click()
    page.get_by_text("digits-demo — running").or_(page.get_by_text("digits-demo — starting")).first.wait_for(
        timeout=30_000)
    shot(page, "1-training")
    page.get_by_text("digits-demo — finished").wait_for(timeout=240_000)
    wait_idle(page)
    shot(page, "2-finished")
    run = (home / "runs" / "digits-demo")
    assert (run / "projection.npy").exists() and (run / "selflabel_probs.npy").exists()

    page.goto(f"{url}/embedding?run=digits-demo")
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for(timeout=30_000)
    wait_idle(page)
    point = page.evaluate("""() => {  // where the first image of the first trace is drawn
        const gd = document.querySelector('.stPlotlyChart .js-plotly-plot'), L = gd._fullLayout;
        const trace = gd._fullData[0], r = gd.getBoundingClientRect();
        return {x: r.left + L._size.l + L.xaxis.l2p(trace.x[0]), y: r.top + L._size.t + L.yaxis.l2p(trace.y[0])};
    }""")
    page.mouse.move(point["x"] - 3, point["y"] - 3)
    page.mouse.move(point["x"], point["y"], steps=3)
    thumb = page.locator("#scan-hover-thumb")
    thumb.wait_for(state="visible", timeout=10_000)
    assert 0 <= int(thumb.get_attribute("data-index")) < 1797
    assert "data:image/png" in thumb.evaluate("e => e.style.backgroundImage")
    shot(page, "3-embedding-hover")
    page.locator(".modebar-btn[data-val='select']").first.click()
    box = page.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.8, steps=12)
    page.mouse.up()
    page.get_by_text("Selection · ").wait_for(timeout=30_000)
    wait_idle(page)
    selected = int(page.get_by_text("Selection · ").inner_text().split("·")[1].split()[0].replace(",", ""))
    assert selected > 0
    page.locator(".scan-gallery img").first.wait_for(timeout=30_000)  # the gallery follows the count in the page
    assert page.locator(".scan-gallery img").count() >= min(selected, 10)
    shot(page, "3-embedding-selection")  # after the hover shot: names sort in order

    page.goto(f"{url}/clusters?run=digits-demo")
    name = page.get_by_label("Name", exact=True)
    name.wait_for(timeout=30_000)
    name.fill("my first cluster")
    page.get_by_role("button", name="Save name").click()
    page.get_by_role("heading", name="0 · my first cluster").wait_for(timeout=30_000)
    wait_idle(page)
    shot(page, "4-clusters")

    page.goto(f"{url}/curate_export?run=digits-demo")
    page.get_by_role("tab", name="Export").click()
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="CSV", exact=True).click()
    target = tmp_path / "labels.csv"
    download.value.save_as(target)
    shot(page, "5-export")
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 1797
    assert {"id", "path", "cluster", "confidence", "curated_label"} <= set(rows[0])
    assert sum(r["curated_label"] == "my first cluster" for r in rows) == sum(r["cluster"] == "0" for r in rows) > 0
