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
from ui.detail import detail_view
from ui.gallery import DISPLAY_PX, gallery, open_in_neighbours
from ui.map_events import hover_thumbnails, map_selection
from ui.state import (
    cluster_options,
    cluster_title,
    cluster_titles,
    curated,
    require_results,
    results_key,
    selection,
    set_selection,
    through_navigation,
)
from ui.text import html_text, markdown_text

#: Well separated colours (plotly's Dark24), in the order cluster ids take them: neighbours in the list
#: differ, and a cluster keeps its colour whatever it is named or whatever else is split off.
PALETTE = pc.qualitative.Dark24


def scatter(xy: np.ndarray, groups: np.ndarray | None, values: np.ndarray | None, custom: np.ndarray,
            text: np.ndarray, group_colour: dict | None = None, centre_labels: bool = False, size: int = 4,
            opacity: float = 0.75) -> go.Figure:
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
    marker = {"size": size, "opacity": opacity}
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
def map_figure(run: tuple, colour: str, curated_digest: str, view: tuple, _results: RunResults,
               _state: CuratedState, _keep: np.ndarray | None, _highlight: dict) -> go.Figure:
    """The map of ``run`` coloured by ``colour``, built once per run, colouring, curated state and
    ``view`` (filters, point size and opacity, highlighted points: a key for ``_keep``, the images
    the filters keep, and ``_highlight``); about 0.1 s for 70k points, saved on every other rerun."""
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
    keep = np.arange(len(confidence)) if _keep is None else np.flatnonzero(_keep)
    size, opacity = view[-2:]
    figure = scatter(np.asarray(results.projection)[keep], None if groups is None else groups[keep],
                     confidence[keep] if colour == "confidence" else None, custom[keep], text[keep], group_colour,
                     centre_labels=colour in ("cluster", "curated label"), size=size, opacity=opacity)
    for name, index, style in (("kept selection", _highlight.get("selection"), {"color": "rgba(0,0,0,0)", "size": size + 4,
                                "line": {"color": "#262730", "width": 1.5}}),
                               ("found", _highlight.get("found"), {"color": "#FF4B4B", "size": 18, "symbol": "star",
                                "line": {"color": "white", "width": 1}})):
        if index is not None and len(index):
            index = np.asarray(index)
            figure.add_trace(go.Scattergl(x=results.projection[index, 0], y=results.projection[index, 1],
                                          mode="markers", name=name, customdata=custom[index], text=text[index],
                                          hovertemplate="#%{customdata[0]}<br>%{text}<extra>" + name + "</extra>",
                                          marker=style))
    return figure


def filters(results: RunResults, state: CuratedState) -> tuple[np.ndarray | None, tuple]:
    """The filter widgets; the mask ``(N,)`` of the images they keep (None: no filter) and a key."""
    has_labels = results.images.has_labels
    cols = st.columns(4 if has_labels else 3)
    low, high = cols[0].slider("Confidence", 0.0, 1.0, (0.0, 1.0), 0.01, key="filter_confidence")
    clusters = cols[1].multiselect("Clusters", cluster_options(state), key="filter_clusters",
                                   format_func=lambda c: cluster_title(state, c), placeholder="all")
    labels = state.labels()
    wanted = cols[2].multiselect("Curated label", sorted(set(labels.tolist())), key="filter_labels", placeholder="all")
    mask = (results.confidence >= low) & (results.confidence <= high)
    if clusters:
        mask &= np.isin(state.clusters, clusters)
    if wanted:
        mask &= np.isin(labels, wanted)
    true, wrong = [], False
    if has_labels:
        true = cols[3].multiselect("True label", results.class_names, key="filter_true", placeholder="all")
        wrong = cols[3].checkbox("True label ≠ predicted", key="filter_wrong",
                                 help="Predicted: each cluster's class under the Evaluation page's mapping")
        names = results.true_label_names()
        if true:
            mask &= np.isin(names, true)
        if wrong:
            mask &= results.evaluation(state.clusters)["predicted"] != results.images.labels
    key = (low, high, tuple(clusters), tuple(wanted), tuple(true), wrong)
    return (None if mask.all() else mask), key


def find(results: RunResults) -> int | None:
    """Find an image (:meth:`~scan_core.explore.results.RunResults.find_image`); a new match opens its
    detail view."""
    text = st.text_input("Find an image", key="find_image", placeholder="id, file name or #index")
    if not text.strip():
        return None
    text = text.strip()
    index = results.find_image(text)
    if index is None:
        st.warning(f"No image with id, file name or index “{markdown_text(text[:60])}”")
        return None
    if st.session_state.get("found") != (str(results.dir), text):  # a new search: open it
        st.session_state["found"] = (str(results.dir), text)
        st.session_state.setdefault("gallery_orders", {})["found"] = [index]
        st.session_state["detail"] = {"run": str(results.dir), "page": "embedding", "index": index, "gallery": "found"}
        st.rerun()
    return index


def main() -> None:
    results = require_results(("probs", "projection"))
    state = curated(results)
    detail_view(results, "embedding")
    st.title("Embedding")
    n = len(results.images)
    options = ["cluster", "curated label", "confidence"] + (["true label"] if results.images.has_labels else [])
    top = st.columns([3, 2], vertical_alignment="bottom")
    colour = top[0].segmented_control("Colour by", options, default="cluster", key="colour_by") or "cluster"
    with top[1]:
        found = find(results)
    with st.expander("Filter and display", icon=":material/filter_alt:"):
        keep, filter_key = filters(results, state)
        cols = st.columns(3)
        size = cols[0].slider("Point size", 2, 16, 8 if n < 2_000 else 6 if n < 20_000 else 4, key="point_size")
        opacity = cols[1].slider("Opacity", 0.1, 1.0, 0.75, 0.05, key="point_opacity")
        cols[2].slider("Thumbnail size", 48, 160, DISPLAY_PX, 8, key="thumb_size")
    confidence = results.confidence
    titles = cluster_titles(state)
    picked = map_selection(n, "embedding_selection")
    if picked is not None:
        set_selection(results, picked)
    selected = selection(results)
    # a kept selection is drawn on the map when the page comes back to it (just after a selection the
    # map shows it already, and redrawing the figure would resend it)
    highlight = {"selection": selected if picked is None and len(selected) else None,
                 "found": [found] if found is not None else None}
    view = (filter_key, hash(selected.tobytes()) if highlight["selection"] is not None else 0, found,
            size, opacity)
    figure = map_figure(results_key(results), colour, state.digest(), view, results, state, keep, highlight)
    # on_select gives the map its box and lasso tools; the selection itself comes through map_selection
    st.plotly_chart(figure, key="embedding", on_select="rerun", selection_mode=("points", "box", "lasso"),
                    config={"displaylogo": False, "scrollZoom": True})
    whole = hover_thumbnails(results, "embedding_hover")
    shown_count = n if keep is None else int(keep.sum())
    st.caption(f"{shown_count:,} of {n:,} images · UMAP of the pretext features · drag to lasso, or pick the box tool; "
               "click a point to select it alone · hover a point to see its image · click a thumbnail below to open it"
               + ("" if whole else " (its neighbourhood's images load on the first hover there)"))
    if keep is not None:
        selected = selected[keep[selected]] if len(selected) else np.flatnonzero(keep)
    if not len(selected):
        st.subheader("Selection")
        st.caption("Select points on the map with the lasso or box, or click one, to see their images here.")
        return
    head, clear = st.columns([3, 1], vertical_alignment="bottom")
    what = "Selection" if len(selection(results)) else "Filtered"
    head.subheader(f"{what} · {len(selected):,} image{'s' if len(selected) > 1 else ''}")
    if clear.button("Clear selection", icon=":material/deselect:", width="stretch", shortcut="escape"):
        set_selection(results, [])
        st.rerun()
    order = selected[np.argsort(-confidence[selected], kind="stable")]
    shown = gallery(results, order, "embedding_gallery",
                    lambda i: f"{titles[int(state.clusters[i])]} · {confidence[i]:.2f}")
    open_in_neighbours(results, shown, "embedding_open")
    st.page_link("pages/curate_export.py", label="Relabel this selection on Curate & export", icon=":material/edit:")


through_navigation()
main()
