"""The Clusters page's cluster box in a real browser (Debian Chromium through Playwright): it stays
on the cluster shown after a rename and the next click, and a second tab whose cluster another tab
merged away shows, in its box too, where that cluster's images went."""
from __future__ import annotations

import numpy as np
from test_browser import (
    browser,  # noqa: F401 (the fixture, shared with the main browser test)
    edits,
    shot,
    skip_without_chromium,
    streamlit_server,
    wait_idle,
)

from apptest import result_probs

pytestmark = skip_without_chromium


def choose_cluster(page, title: str) -> None:
    """Pick ``title`` in the Cluster box (typed, so that the list shows it) and wait for the page to show it."""
    wait_idle(page)
    box = page.get_by_role("combobox", name="Cluster", exact=True)
    box.click()
    box.fill(title)
    page.get_by_role("option", name=title, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=30_000)
    wait_idle(page)


def box_text(page) -> str:
    """What the Cluster box shows (the text of its combobox input)."""
    return page.get_by_role("combobox", name="Cluster", exact=True).input_value()


def test_a_rename_then_a_click_stays_on_the_cluster(own_home, browser):  # noqa: F811
    run = own_home / "runs" / "digits"
    size = int(np.sum(result_probs(run).argmax(1) == 5))  # cluster 5's images, read from the run's files
    with streamlit_server(own_home) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/clusters?run=digits")
        page.get_by_role("combobox", name="Cluster", exact=True).wait_for(timeout=60_000)
        wait_idle(page)
        choose_cluster(page, "cluster 5")
        page.get_by_label("Name", exact=True).fill("alpha")
        page.get_by_role("button", name="Save name").click()
        page.get_by_role("heading", name="5 · alpha", exact=True).wait_for(timeout=30_000)
        wait_idle(page)
        assert box_text(page) == "5 · alpha"  # the box shows the new title, not the old one
        page.get_by_role("tab", name="Members by confidence").click()
        page.get_by_text("not reviewed", exact=True).click()  # the click that used to jump
        wait_idle(page)
        shot(page, "clusters-rename-then-filter")
        assert page.get_by_role("heading", name="5 · alpha", exact=True).is_visible()
        assert box_text(page) == "5 · alpha"
        page.get_by_role("button", name="Merge…").click()  # what a merge would now move: cluster 5
        wait_idle(page)
        asked = page.get_by_text("Move all ").first.inner_text()
        assert f"Move all {size:,} images of 5 · alpha into" in asked, asked
        page.get_by_role("button", name="Cancel").click()
        wait_idle(page)
        assert [e["cluster"] for e in edits(run, "name_cluster")] == [5]
        assert edits(run, "merge") == []


def test_a_stale_tab_follows_a_merged_cluster(own_home, browser):  # noqa: F811
    run = own_home / "runs" / "digits"
    with streamlit_server(own_home) as url:
        first, second = browser.new_page(), browser.new_page()
        for page in (first, second):
            page.set_viewport_size({"width": 1400, "height": 1000})
            page.goto(f"{url}/clusters?run=digits")
            page.get_by_role("combobox", name="Cluster", exact=True).wait_for(timeout=60_000)
            wait_idle(page)
            choose_cluster(page, "cluster 7")
        # a busy machine may still show the name box of the cluster shown before, for a moment
        second.wait_for_function("() => document.querySelectorAll('input[aria-label=\"Name\"]').length === 1")
        second.get_by_label("Name", exact=True).fill("sevens")  # typed in the second tab, not yet saved
        merge_into = first.get_by_role("combobox", name="Merge this cluster into")  # the first tab merges 7 into 2
        merge_into.scroll_into_view_if_needed()
        merge_into.click()
        merge_into.fill("cluster 2")
        first.get_by_role("option", name="cluster 2", exact=True).click()
        wait_idle(first)
        first.get_by_role("button", name="Merge…").click()
        first.get_by_role("button", name="Confirm merge").click()
        first.get_by_role("heading", name="cluster 2", exact=True).wait_for(timeout=30_000)
        assert edits(run, "merge") == [{"source": 7, "target": 2}]
        second.get_by_role("button", name="Save name").click()  # the second tab acts on what it saw
        second.get_by_text("Cluster 7 no longer exists").wait_for(timeout=30_000)
        wait_idle(second)
        shot(second, "clusters-stale-tab")
        warning = second.get_by_text("Cluster 7 no longer exists").inner_text()
        assert "Showing cluster 2" in warning and "sevens" in warning, warning
        assert box_text(second) == "cluster 2"  # the box says what the body shows
        assert second.get_by_role("heading", name="cluster 2", exact=True).is_visible()
        assert edits(run, "name_cluster") == []
