"""Embedding: the UMAP map of the features (computed by the job), coloured by cluster, curated
label, true label or confidence; hover shows the image (``ui.hover``, small runs); box / lasso
selection fills a paged gallery."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ui.gallery import gallery, open_in_neighbours
from ui.hover import hover_thumbnails
from ui.state import cluster_title, curated, require_results, through_navigation

PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6",
           "#9D755D", "#BAB0AC", "#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2",
           "#7F7F7F", "#BCBD22", "#17BECF", "#393B79"]


def scatter(xy: np.ndarray, groups: np.ndarray | None, values: np.ndarray | None, custom: np.ndarray,
            text: np.ndarray) -> go.Figure:
    """A WebGL scatter: one trace per group (legend), or one trace on a colour scale (``values``).

    ``custom`` ``(N, 3)`` float32 = image index, confidence, cluster: numeric, so plotly sends it as a
    compact binary array (strings for 70k points would be ~10 MB); selections read the image index
    back from ``customdata[0]`` whatever the trace. ``text`` ``(N,)``: the label line of the hover.
    """
    figure = go.Figure()
    template = ("#%{customdata[0]} · cluster %{customdata[2]}<br>%{text}<br>confidence %{customdata[1]:.3f}"
                "<extra>%{fullData.name}</extra>")
    xy = np.asarray(xy, dtype=np.float32)
    marker = {"size": 4, "opacity": 0.75}
    if groups is not None:
        for number, group in enumerate(sorted(set(groups.tolist()), key=str)):
            index = np.flatnonzero(groups == group)
            figure.add_trace(go.Scattergl(
                x=xy[index, 0], y=xy[index, 1], mode="markers", name=str(group), customdata=custom[index],
                text=text[index], hovertemplate=template,
                marker={**marker, "color": PALETTE[number % len(PALETTE)]}))
    else:
        figure.add_trace(go.Scattergl(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name="images", customdata=custom, text=text,
            hovertemplate=template, marker={**marker, "color": values.astype(np.float32), "colorscale": "Viridis",
                                            "showscale": True, "colorbar": {"title": "confidence"}}))
    figure.update_layout(height=640, margin={"l": 0, "r": 0, "t": 10, "b": 0}, dragmode="lasso",
                         legend={"itemsizing": "constant", "title": None}, xaxis={"visible": False},
                         yaxis={"visible": False, "scaleanchor": "x"}, uirevision="keep")
    return figure


def image_index(customdata) -> int:
    """The image index of a selected point: ``customdata[0]``, which the selection event returns
    as a list, or (for binary-encoded arrays) as a dict keyed by the column as a string."""
    return int(customdata["0"] if isinstance(customdata, dict) else customdata[0])


def main() -> None:
    results = require_results(("probs", "projection"))
    state = curated(results)
    st.title("Embedding")
    n = len(results.images)
    options = ["cluster", "curated label", "confidence"] + (["true label"] if results.images.has_labels else [])
    colour = st.segmented_control("Colour by", options, default="cluster", key="colour_by") or "cluster"
    confidence = results.confidence
    titles = {int(c): cluster_title(state, c) for c in np.unique(state.clusters)}
    cluster_names = np.array([titles[int(c)] for c in state.clusters], dtype=object)
    true_names = results.true_label_names()
    labels = state.labels()
    text = (np.char.add("true: ", true_names.astype(str)) if true_names is not None
            else np.char.add("label: ", labels.astype(str)))
    custom = np.stack([np.arange(n), confidence, state.clusters], 1).astype(np.float32)
    groups = {"cluster": cluster_names, "curated label": labels, "true label": true_names}.get(colour)
    figure = scatter(np.asarray(results.projection), groups, confidence if colour == "confidence" else None,
                     custom, text)
    event = st.plotly_chart(figure, key="embedding", on_select="rerun", selection_mode=("points", "box", "lasso"),
                            config={"displaylogo": False, "scrollZoom": True})
    thumbnails = hover_thumbnails(results)
    st.caption(f"{n:,} images · UMAP of the pretext features · drag to lasso, or pick the box tool · "
               + ("hover a point to see its image" if thumbnails else
                  "hover thumbnails are off for a run this big (open images from the gallery)"))
    points = event.selection.points if event and event.selection else []
    selected = np.unique([image_index(p["customdata"]) for p in points if p.get("customdata") is not None])
    st.session_state["selection"] = selected.tolist()
    st.subheader(f"Selection · {len(selected):,} images" if len(selected) else "Selection")
    if not len(selected):
        st.caption("Select points on the map with the lasso or box to see their images here; "
                   "double-click the map to clear.")
        return
    order = selected[np.argsort(-confidence[selected], kind="stable")]
    shown = gallery(results, order, "embedding_gallery",
                    lambda i: f"{titles[int(state.clusters[i])]} · {confidence[i]:.2f}")
    open_in_neighbours(results, shown, "embedding_open")
    st.page_link("pages/curate_export.py", label="Relabel this selection on Curate & export", icon=":material/edit:")


through_navigation()
main()
