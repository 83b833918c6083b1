"""Embedding: the UMAP map of the features (computed by the job), coloured by cluster, curated
label, true label or confidence; box / lasso selection fills a paged gallery."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ui.gallery import gallery, open_in_neighbours
from ui.state import cluster_title, curated, require_results, through_navigation

PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6",
           "#9D755D", "#BAB0AC", "#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2",
           "#7F7F7F", "#BCBD22", "#17BECF", "#393B79"]


def scatter(xy: np.ndarray, groups: np.ndarray | None, values: np.ndarray | None, hover: np.ndarray,
            ids: np.ndarray) -> go.Figure:
    """A WebGL scatter; one trace per group (legend) or one trace with a colour scale. The image
    index rides in ``customdata[0]`` so selections map back to images whatever the trace."""
    figure = go.Figure()
    template = "%{customdata[1]}<extra></extra>"
    if groups is not None:
        for number, group in enumerate(sorted(set(groups.tolist()), key=str)):
            index = np.flatnonzero(groups == group)
            figure.add_trace(go.Scattergl(
                x=xy[index, 0], y=xy[index, 1], mode="markers", name=str(group),
                marker={"size": 4, "color": PALETTE[number % len(PALETTE)], "opacity": 0.75},
                customdata=np.stack([ids[index], hover[index]], 1), hovertemplate=template))
    else:
        figure.add_trace(go.Scattergl(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name="images",
            marker={"size": 4, "color": values, "colorscale": "Viridis", "showscale": True, "opacity": 0.8,
                    "colorbar": {"title": "confidence"}},
            customdata=np.stack([ids, hover], 1), hovertemplate=template))
    figure.update_layout(height=640, margin={"l": 0, "r": 0, "t": 10, "b": 0}, dragmode="lasso",
                         legend={"itemsizing": "constant", "title": None}, xaxis={"visible": False},
                         yaxis={"visible": False, "scaleanchor": "x"}, uirevision="keep")
    return figure


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
    ids = results.images.ids
    true = true_names if true_names is not None else np.full(n, None)
    hover = np.array([f"#{i} · {ids[i]}<br>{cluster_names[i]}<br>label: {labels[i]}<br>confidence: {confidence[i]:.3f}"
                      + (f"<br>true: {true[i]}" if true[i] is not None else "") for i in range(n)], dtype=object)
    groups = {"cluster": cluster_names, "curated label": labels, "true label": true_names}.get(colour)
    figure = scatter(np.asarray(results.projection), groups, confidence if colour == "confidence" else None,
                     hover, np.arange(n))
    st.caption(f"{n:,} images · UMAP of the pretext features · drag to lasso, or pick the box tool")
    event = st.plotly_chart(figure, key="embedding", on_select="rerun", selection_mode=("points", "box", "lasso"),
                            config={"displaylogo": False, "scrollZoom": True})
    points = event.selection.points if event and event.selection else []
    selected = np.unique([int(p["customdata"][0]) for p in points if p.get("customdata") is not None])
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
