"""Embedding: the UMAP map of the features (computed by the job), coloured by cluster, curated
label, true label or confidence; hover shows the image; box / lasso / click selections
(``ui.map_events``: image indices only) fill a paged gallery and stay the session's selection."""
from __future__ import annotations

import numpy as np
import plotly.colors as pc
import plotly.graph_objects as go
import streamlit as st

from scan_core.explore.curation import CuratedState
from scan_core.explore.results import RunResults
from ui.gallery import gallery, open_in_neighbours
from ui.map_events import hover_thumbnails, map_selection
from ui.state import cluster_titles, curated, require_results, results_key, selection, set_selection, through_navigation
from ui.text import html_text

#: Well separated colours (plotly's Dark24), in the order cluster ids take them: neighbours in the list
#: differ, and a cluster keeps its colour whatever it is named or whatever else is split off.
PALETTE = pc.qualitative.Dark24


def scatter(xy: np.ndarray, groups: np.ndarray | None, values: np.ndarray | None, custom: np.ndarray,
            text: np.ndarray, group_colour: dict | None = None, centre_labels: bool = False) -> go.Figure:
    """A WebGL scatter: one trace per group (legend), or one trace on a colour scale (``values``).

    ``custom`` ``(N, 3)`` float32 = image index, confidence, cluster: numeric, so plotly sends it as a
    compact binary array (strings for 70k points would be ~10 MB); ``ui.map_events`` reads the image
    index back from ``customdata[0]`` whatever the trace. ``text`` ``(N,)``: the label line of the hover.
    ``group_colour``: group -> palette position (stable colours; groups are drawn in that order);
    ``centre_labels``: each group's name written at its median point. Names reach plotly escaped.
    """
    figure = go.Figure()
    template = ("#%{customdata[0]} · cluster %{customdata[2]}<br>%{text}<br>confidence %{customdata[1]:.3f}"
                "<extra>%{fullData.name}</extra>")
    xy = np.asarray(xy, dtype=np.float32)
    text = np.asarray([html_text(t) for t in text], dtype=object)
    marker = {"size": 4, "opacity": 0.75}
    if groups is not None:
        order = sorted(set(groups.tolist()), key=lambda g: (group_colour or {}).get(g, 0))
        for number, group in enumerate(order):
            index = np.flatnonzero(groups == group)
            colour = PALETTE[(group_colour or {}).get(group, number) % len(PALETTE)]
            figure.add_trace(go.Scattergl(
                x=xy[index, 0], y=xy[index, 1], mode="markers", name=html_text(group), customdata=custom[index],
                text=text[index], hovertemplate=template, marker={**marker, "color": colour}))
            if centre_labels:
                centre = np.median(xy[index], axis=0)
                figure.add_annotation(x=float(centre[0]), y=float(centre[1]), text=html_text(group), showarrow=False,
                                      font={"size": 12, "color": colour}, bgcolor="rgba(255,255,255,0.7)")
    else:
        figure.add_trace(go.Scattergl(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name="images", customdata=custom, text=text,
            hovertemplate=template, marker={**marker, "color": values.astype(np.float32), "colorscale": "Viridis",
                                            "showscale": True, "colorbar": {"title": "confidence"}}))
    figure.update_layout(height=640, margin={"l": 0, "r": 0, "t": 36, "b": 0}, dragmode="lasso",
                         legend={"itemsizing": "constant", "title": None}, xaxis={"visible": False},
                         yaxis={"visible": False, "scaleanchor": "x"}, uirevision="keep",
                         hoverlabel={"bgcolor": "white", "font": {"color": "#262730", "size": 13}})
    return figure


def stable_colours(groups: np.ndarray, clusters: np.ndarray) -> dict:
    """Palette position of every group: the cluster id most of its images are in (so a cluster's
    colour survives renames, and a label's follows its main cluster); ties and shared clusters
    take the next free position."""
    colours, taken = {}, set()
    for group in sorted(set(groups.tolist()), key=str):
        ids, counts = np.unique(clusters[groups == group], return_counts=True)
        position = int(ids[np.argmax(counts)])
        while position in taken:
            position += 1
        colours[group] = position
        taken.add(position)
    return colours


@st.cache_resource(max_entries=6, show_spinner=False)
def map_figure(run: tuple, colour: str, curated_digest: str, _results: RunResults, _state: CuratedState) -> go.Figure:
    """The map of ``run`` coloured by ``colour``, built once per run, colouring and curated state
    (about 0.1 s for 70k points, saved on every rerun of the page: selections, gallery pages)."""
    results, state = _results, _state
    confidence = results.confidence
    titles = cluster_titles(state)
    cluster_names = np.array([titles[int(c)] for c in state.clusters], dtype=object)
    true_names = results.true_label_names()
    labels = state.labels()
    text = (np.char.add("true: ", true_names.astype(str)) if true_names is not None
            else np.char.add("label: ", labels.astype(str)))
    custom = np.stack([np.arange(len(confidence)), confidence, state.clusters], 1).astype(np.float32)
    groups = {"cluster": cluster_names, "curated label": labels, "true label": true_names}.get(colour)
    if colour == "cluster":
        group_colour = {titles[c]: c for c in titles}
    elif colour == "true label":
        group_colour = {name: i for i, name in enumerate(results.class_names)}
    else:
        group_colour = stable_colours(labels, state.clusters) if groups is not None else None
    return scatter(np.asarray(results.projection), groups, confidence if colour == "confidence" else None,
                   custom, text, group_colour, centre_labels=colour in ("cluster", "curated label"))


def main() -> None:
    results = require_results(("probs", "projection"))
    state = curated(results)
    st.title("Embedding")
    n = len(results.images)
    options = ["cluster", "curated label", "confidence"] + (["true label"] if results.images.has_labels else [])
    colour = st.segmented_control("Colour by", options, default="cluster", key="colour_by") or "cluster"
    confidence = results.confidence
    titles = cluster_titles(state)
    figure = map_figure(results_key(results), colour, state.digest(), results, state)
    # on_select gives the map its box and lasso tools; the selection itself comes through map_selection
    st.plotly_chart(figure, key="embedding", on_select="rerun", selection_mode=("points", "box", "lasso"),
                    config={"displaylogo": False, "scrollZoom": True})
    picked = map_selection(n, "embedding_selection")
    whole = hover_thumbnails(results, "embedding_hover")
    st.caption(f"{n:,} images · UMAP of the pretext features · drag to lasso, or pick the box tool; click a point "
               "to select it alone · hover a point to see its image"
               + ("" if whole else " (its neighbourhood's images load on the first hover there)"))
    if picked is not None:
        set_selection(results, picked)
    selected = selection(results)
    if not len(selected):
        st.subheader("Selection")
        st.caption("Select points on the map with the lasso or box, or click one, to see their images here.")
        return
    head, clear = st.columns([5, 1], vertical_alignment="bottom")
    head.subheader(f"Selection · {len(selected):,} image{'s' if len(selected) > 1 else ''}")
    if clear.button("Clear selection", icon=":material/deselect:", width="stretch"):
        set_selection(results, [])
        st.rerun()
    order = selected[np.argsort(-confidence[selected], kind="stable")]
    shown = gallery(results, order, "embedding_gallery",
                    lambda i: f"{titles[int(state.clusters[i])]} · {confidence[i]:.2f}")
    open_in_neighbours(results, shown, "embedding_open")
    st.page_link("pages/curate_export.py", label="Relabel this selection on Curate & export", icon=":material/edit:")


through_navigation()
main()
