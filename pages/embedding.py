"""Embedding: the UMAP map of the features (computed by the job), coloured by cluster, curated
label, true label or confidence; hover shows the image; box / lasso / click selections
(``ui.map_events``: image indices only, or the region drawn on a big map) fill a paged gallery and
stay the session's selection."""
from __future__ import annotations

import numpy as np
import streamlit as st

from scan_core.config import PRETRAINED, RunConfig
from scan_core.explore.curation import CuratedState
from scan_core.explore.map_points import in_region
from scan_core.explore.results import RunResults
from ui.curating import cluster_box, cluster_options, cluster_titles, curated, seen_version
from ui.detail import detail_view, open_detail
from ui.gallery import DISPLAY_PX, gallery, open_in_neighbours
from ui.keys import EDIT_IMAGES_TAB, RUN_PARAM, TAB_PARAM, THUMB_SIZE
from ui.map_events import hover_thumbnails, map_events
from ui.map_figure import COLOURINGS, SHOWN_AS, MapView, hidden_images, map_figure
from ui.navigation import page_link, through_navigation
from ui.new_cluster import new_cluster_form
from ui.runs import require_results
from ui.selection import selection, set_selection
from ui.text import markdown_text

FOUND = "found"  # (run, text) of the last search that opened its image
ZOOM = "map_zoom"  # (run, ranges) the map was last zoomed to
MANY_POINTS = 20_000  # from this many images the map opens as a density view


def filters(results: RunResults, state: CuratedState) -> tuple[np.ndarray | None, tuple]:
    """The filter widgets; the mask ``(N,)`` of the images they keep (None: no filter) and a key."""
    has_labels = results.images.has_labels
    cols = st.columns(4 if has_labels else 3)
    low, high = cols[0].slider("Confidence", 0.0, 1.0, (0.0, 1.0), 0.01, key="filter_confidence")
    clusters = cluster_box(cols[1], "Clusters", cluster_options(state), state, "filter_clusters", multi=True,
                           placeholder="all")
    wanted = cols[2].multiselect("Curated label", state.label_set(), key="filter_labels", placeholder="all")
    mask = (results.confidence >= low) & (results.confidence <= high)
    if clusters:
        mask &= np.isin(state.clusters, clusters)
    if wanted:
        codes, names = state.label_codes()
        mask &= np.isin(codes, np.flatnonzero(np.isin(names, wanted)))
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
    if st.session_state.get(FOUND) != (str(results.dir), text):  # a new search: open it
        st.session_state[FOUND] = (str(results.dir), text)
        open_detail(results, "embedding", index, "found", order=[index])
        st.rerun()
    return index


def mapped_space(config: RunConfig) -> str:
    """What the map is a UMAP of, in words: what the heads of a run with ``config`` learned on."""
    backbone = config.backbone
    seen = {"hog": "the images' HOG", "pixels": "the pixels' PCA", "both": f"the {backbone} features and the pixels' PCA",
            "features": (f"the frozen pretrained {backbone} features" if backbone in PRETRAINED else
                         f"the {backbone} features trained with SimCLR")}[config.head_input]
    return f"the {config.manifold_dims}-d manifold of {seen}" if config.manifold_dims else seen


def main() -> None:
    results = require_results(("probs", "projection"))
    state = curated(results)
    detail_view(results, "embedding")
    st.title("Embedding")
    n = len(results.images)
    options = [c for c in COLOURINGS if c != "true label" or results.images.has_labels]
    top = st.columns([3, 2], vertical_alignment="bottom")
    colour = top[0].segmented_control("Colour by", options, default="cluster", key="colour_by") or "cluster"
    shown_as = top[0].segmented_control(
        "Show", SHOWN_AS, default="density" if n >= MANY_POINTS else "points", key="map_shown_as",
        help="points; density: where the images lie thickest, for many points; thumbnails: the images "
             "themselves spread over the map (zoom in for more of a region)") or "points"
    with top[1]:
        found = find(results)
    with st.expander("Filter and display", icon=":material/filter_alt:"):
        keep, filter_key = filters(results, state)
        cols = st.columns(3)
        size = cols[0].slider("Point size", 2, 16, 8 if n < 2_000 else 6 if n < 20_000 else 4, key="point_size")
        opacity = cols[1].slider("Opacity", 0.1, 1.0, 0.75, 0.05, key="point_opacity")
        cols[2].slider("Thumbnail size", 48, 160, DISPLAY_PX, 8, key=THUMB_SIZE)
    confidence = results.confidence
    titles = cluster_titles(state)
    event = map_events(n, "embedding_selection")
    picked = event.selected
    if event.region is not None:  # drawn on a map at a level of detail: every image in it
        candidates = np.ones(n, dtype=bool) if keep is None else keep.copy()
        candidates &= ~hidden_images(results, state, colour, list(event.hidden))
        picked = in_region(results.projection, np.flatnonzero(candidates), event.region)
    if picked is not None:
        set_selection(results, picked)
    if event.zoom is not None:
        st.session_state[ZOOM] = (str(results.dir), event.zoom or None)
    zoomed = st.session_state.get(ZOOM)
    zoom = zoomed[1] if zoomed and zoomed[0] == str(results.dir) else None
    selected = selection(results)
    # a kept selection is drawn on the map when the page comes back to it (just after a selection the
    # map shows it already, and redrawing the figure would resend it)
    view = MapView(colour, keep, filter_key, size, opacity, found=found, shown_as=shown_as, zoom=zoom,
                   selection=selected if picked is None and len(selected) else None)
    figure = map_figure(results, state, view)
    # on_select gives the map its box and lasso tools; the selection itself comes through map_selection
    st.plotly_chart(figure, key="embedding", on_select="rerun", selection_mode=("points", "box", "lasso"),
                    config={"displaylogo": False, "scrollZoom": True})
    whole = hover_thumbnails(results, "embedding_hover")
    shown_count = n if keep is None else int(keep.sum())
    st.caption(f"{shown_count:,} of {n:,} images · UMAP of {mapped_space(results.config)} · drag to lasso, or pick the box tool; "
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
    new_cluster_form(results, selected, "embedding_new_cluster", seen_version(),
                     f"New cluster from {'selection' if what == 'Selection' else 'these images'}")
    page_link("Curate & export", label="Relabel this selection on Curate & export",
              query_params={RUN_PARAM: results.dir.name, TAB_PARAM: EDIT_IMAGES_TAB})


through_navigation()
main()
