"""Review: the images most likely to be in the wrong cluster, across all clusters, most doubtful
first (:mod:`scan_core.explore.review`), each with the reason it is there. Click one for its detail
view (A accepts it where it is, a number key moves it, both go on to the next); or accept a whole
page. Reviewed images leave the queue; every action is a curation edit (history, undo)."""
from __future__ import annotations

import streamlit as st

from scan_core.explore.review import review_queue
from ui.detail import detail_view
from ui.gallery import gallery
from ui.state import cluster_title, curated, curation, edit, require_results, through_navigation, who

PAGE_SIZE = 48


def main() -> None:
    results = require_results(("probs", "neighbors"))
    state = curated(results)
    detail_view(results, "review")
    st.title("Review")
    queue = review_queue(results.probs, results.neighbor_lists(), state.clusters, skip=state.reviewed | state.outliers)
    left, right = st.columns(2)
    left.metric("Left to review", f"{len(queue.order):,}")
    right.metric("Reviewed", f"{len(state.reviewed):,}")
    st.caption("Most doubtful first: its nearest images (the mined neighbours, and the nearest in the "
               "features) mostly belong to other clusters. Under each image: its cluster, and the share of "
               "its neighbours' votes for that cluster. Click an image to see it with its neighbours; **A** "
               "accepts it, a **number key** moves it to that cluster.")
    shown = gallery(results, queue.order, "review", lambda i: short_reason(state, queue, i), page_size=PAGE_SIZE,
                    empty="Nothing left to review.")
    if len(shown) and st.button(f"Accept these {len(shown)} where they are", icon=":material/done_all:",
                                help="Every image of this page stays in its cluster, reviewed"):
        edit(lambda: curation(results).accept(shown, state.clusters[shown], who()),
             f"{len(shown)} images accepted")


def short_reason(state, queue, index: int) -> str:
    votes = " / ".join(f"{1 - against[index]:.0%}" for against in queue.against)
    return f"{cluster_title(state, int(state.clusters[index]))} · votes {votes}"


through_navigation()
main()
