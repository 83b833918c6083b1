"""Neighbours: the mined nearest neighbours of one image, and where neighbourhoods disagree."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ui.curating import cluster_title, curated
from ui.detail import detail_view
from ui.gallery import display_image, gallery
from ui.keys import IMAGE_PARAM
from ui.navigation import through_navigation
from ui.runs import require_results
from ui.selection import image_number
from ui.text import markdown_text, text_lines

WORST = 60
IMAGE_INDEX = "image_index"  # the image shown
IMAGE_FOUND = "image_found"  # the search that last moved to its image


def pick_image(results) -> int:
    """The image to show: from the URL (``?image=``), a gallery's "open", or found by what the user
    typed (:meth:`~scan_core.explore.results.RunResults.find_image`, as on Embedding). A search that
    finds nothing says so and shows no image (not the one shown before)."""
    n = len(results.images)
    ids = results.images.ids
    asked = image_number(st.query_params.get(IMAGE_PARAM) or "", n)
    if asked is not None:
        st.session_state[IMAGE_INDEX] = asked
    left, right = st.columns([2, 1], vertical_alignment="bottom")
    typed = left.text_input("Find an image", placeholder=f"id, file name or #index (e.g. {ids[0]} or #0)",
                            key="image_query")
    if right.button("Random image", icon=":material/shuffle:"):
        st.session_state[IMAGE_INDEX] = int(np.random.default_rng().integers(n))
    elif typed.strip():
        found = results.find_image(typed)
        if found is None:
            st.warning(f"No image with id, file name or index “{markdown_text(typed.strip()[:60])}”")
            st.stop()
        if st.session_state.get(IMAGE_FOUND) != typed:  # a new search moves to its image; Random still works
            st.session_state[IMAGE_FOUND] = typed
            st.session_state[IMAGE_INDEX] = found
    index = int(st.session_state.get(IMAGE_INDEX, 0))
    st.query_params[IMAGE_PARAM] = str(index)
    return index


def main() -> None:
    results = require_results(("probs", "neighbors"))
    state = curated(results)
    detail_view(results, "neighbours")
    st.title("Neighbours")
    neighbors = np.asarray(results.neighbors)
    labels, ids = state.labels(), results.images.ids
    true_names = results.true_label_names()
    index = pick_image(results)

    left, right = st.columns([1, 4])
    with left:
        st.image(display_image(results.thumbnails()[index], 160))
        text_lines([f"{ids[index]} (#{index})", cluster_title(state, state.clusters[index]), f"label: {labels[index]}",
                    f"confidence: {results.confidence[index]:.3f}"]
                   + ([f"true: {true_names[index]}"] if true_names is not None else []))
    with right:
        st.caption(f"Its {neighbors.shape[1]} mined neighbours, nearest first (the pairs SCAN trained on)")

        def caption(i: int) -> str:
            same = "✓" if state.clusters[i] == state.clusters[index] else "✗"
            return f"{same} {cluster_title(state, state.clusters[i])}"
        gallery(results, neighbors[index], f"nn_{index}", caption)

    st.subheader("Neighbourhood quality")
    agreement = results.neighbor_agreement(state.clusters)
    purity = results.neighbor_label_purity()
    cols = st.columns(2)
    cols[0].metric("Neighbours in the same cluster", f"{agreement.mean():.3f}")
    if purity is not None:
        cols[1].metric("Neighbour purity (same true label)", f"{purity.mean():.3f}")
    else:
        cols[1].caption("Neighbour purity needs labels; this run has none.")
    table = pd.DataFrame({"cluster": state.clusters, "agreement": agreement}
                         | ({"purity": purity} if purity is not None else {}))
    per_cluster = table.groupby("cluster").mean().reset_index()
    per_cluster.insert(1, "name", [state.names.get(int(c), "") for c in per_cluster["cluster"]])
    st.dataframe(per_cluster, hide_index=True, width="stretch", column_config={
        column: st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.3f")
        for column in ("agreement", "purity")})
    st.subheader("Images whose neighbours disagree most")
    st.caption("Their neighbours mostly sit in other clusters: borderline or mis-clustered images.")
    worst = np.argsort(agreement, kind="stable")[:WORST]
    gallery(results, worst, "disagree", lambda i: f"{agreement[i]:.2f} · {cluster_title(state, state.clusters[i])}")


through_navigation()
main()
