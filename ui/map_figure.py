"""The Embedding page's map: a WebGL scatter of the 2-D projection, coloured by cluster, curated
label, true label or confidence, described by a frozen :class:`MapView` and cached by it.

Three ways to show it (:data:`SHOWN_AS`): ``points``; ``density``, the points' 2-D histogram (counted
here, sent as a small heatmap) under faint points (for many points, where dots hide each other;
selection and hover still work); and
``thumbnails``, the images themselves spread over the part of the map on screen, as in a sprite
view: the one nearest the centre of every cell of a :data:`THUMBNAIL_GRID` grid (zoom in for more of
a region's images). Past :func:`drawn_at_once` points the map is drawn at a level of detail
(:func:`map_figure`).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import plotly.colors as pc
import plotly.graph_objects as go
import streamlit as st

from scan_core.explore.curation import CuratedState
from scan_core.explore.map_points import density, thinned
from scan_core.explore.results import RunResults
from scan_core.settings import env_int
from ui.artifacts import results_key
from ui.curating import cluster_titles
from ui.gallery import data_uri
from ui.text import html_text

COLOURINGS = ("cluster", "curated label", "confidence", "true label")
SHOWN_AS = ("points", "density", "thumbnails")
THUMBNAIL_GRID = 12        # cells a side of the thumbnails view: at most 144 images on screen
THUMBNAIL_PX = 48          # the pixels of each
DENSITY_BINS = 120         # bins a side of the density view
MAX_DRAWN = 50_000         # points drawn at most (a browser draws this many WebGL points in about a second)
MAX_DRAWN_ENV = "SCAN_EXPLORER_MAP_POINTS"
LABEL_OUTLINE = ", ".join(f"{x}px {y}px 1px white" for x in (-1, 1) for y in (-1, 1))  # CSS text-shadow


@dataclasses.dataclass(frozen=True, eq=False)
class MapView:
    """What the map shows of a run: the colouring (one of :data:`COLOURINGS`), the images the
    filters keep (``keep`` ``(N,)`` bool, None: all; ``filters``: a hashable key of the filters that
    made it), the points' size and opacity, the kept selection drawn outlined (``(M,)`` indices, None:
    none drawn), the image found by a search (drawn as a star), how the map is shown (one of
    :data:`SHOWN_AS`) and the ranges on screen ``(x0, x1, y0, y1)`` the user zoomed to (None: all)."""
    colour: str = "cluster"
    keep: np.ndarray | None = None
    filters: tuple = ()
    size: int = 6
    opacity: float = 0.75
    selection: np.ndarray | None = None
    found: int | None = None
    shown_as: str = "points"
    zoom: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.colour not in COLOURINGS:
            raise ValueError(f"colour must be one of {COLOURINGS}, not {self.colour!r}")
        if self.shown_as not in SHOWN_AS:
            raise ValueError(f"shown_as must be one of {SHOWN_AS}, not {self.shown_as!r}")
        if self.zoom is not None and len(self.zoom) != 4:
            raise ValueError(f"zoom must be the ranges (x0, x1, y0, y1), got {self.zoom!r}")

    def key(self) -> tuple:
        """Equal for two views that draw the same figure of the same run."""
        selection = None if self.selection is None else np.asarray(self.selection, dtype=np.int64).tobytes()
        return self.colour, self.filters, self.size, self.opacity, selection, self.found, self.shown_as, self.zoom


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
    ``centre_labels``: each group's name written at its median point, as text with a thin white outline
    and no box, so that the points under it stay visible. Names reach plotly escaped.
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
                                      font={"size": 11, "color": colour, "weight": 600, "shadow": LABEL_OUTLINE})
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


def thumbnail_places(xy: np.ndarray, keep: np.ndarray, zoom: tuple[float, ...] | None,
                     grid: int = THUMBNAIL_GRID) -> list[tuple[int, tuple[float, float, float, float]]]:
    """Where the thumbnails view draws images: for every cell of a ``grid`` x ``grid`` grid over the
    ranges ``zoom`` (None: the extent of the images ``keep``), the image of ``keep`` nearest the
    cell's centre among those inside the cell, with its place ``(x, y, width, height)`` (the cell,
    a little smaller). ``xy``: ``(N, 2)`` map positions."""
    points = xy[keep]
    if zoom is None:
        low, high = points.min(0), points.max(0)
    else:
        low = np.array([min(zoom[0], zoom[1]), min(zoom[2], zoom[3])])
        high = np.array([max(zoom[0], zoom[1]), max(zoom[2], zoom[3])])
    step = np.maximum((high - low) / grid, 1e-9)
    inside = np.all((points >= low) & (points <= high), axis=1)
    cells = np.minimum(((points[inside] - low) // step).astype(np.int64), grid - 1)
    centres = low + (cells + 0.5) * step
    distance = np.linalg.norm((points[inside] - centres) / step, axis=1)
    candidates = keep[inside]
    order = np.lexsort((distance, cells[:, 1], cells[:, 0]))  # by cell, nearest its centre first
    first = np.ones(len(order), dtype=bool)
    first[1:] = np.any(np.diff(cells[order], axis=0) != 0, axis=1)
    return [(int(candidates[i]), (float(centres[i, 0]), float(centres[i, 1]), float(step[0] * 0.92),
                                  float(step[1] * 0.92))) for i in order[first]]


def drawn_at_once() -> int:
    """The most points the map draws: :data:`MAX_DRAWN`, or ``$SCAN_EXPLORER_MAP_POINTS``."""
    return env_int(MAX_DRAWN_ENV, MAX_DRAWN, 1, "points")


def thinned_view(view: MapView, shown: int, limit: int) -> bool:
    """Whether a view of ``shown`` images is drawn at a level of detail (more than ``limit``, from
    :func:`drawn_at_once`; the thumbnails view draws its own images)."""
    return view.shown_as != "thumbnails" and shown > limit


def map_figure(results: RunResults, state: CuratedState, view: MapView) -> go.Figure:
    """The map of ``results`` in the curated ``state`` as ``view`` says, built once per run, curated
    state and view (a cached figure saves its build on every other rerun, and Streamlit sends an
    unchanged figure to a browser that has it as a reference only).

    Up to :func:`drawn_at_once` images every one is drawn and the zoom is the browser's affair; past
    it the map is drawn at a level of detail (:mod:`scan_core.explore.map_points`): the points
    thinned to one per grid cell over the ranges on screen, drawn again for each zoom, and marked
    (``layout.meta.regions``) so that a box or lasso comes back as its region, not as the points drawn.
    """
    limit = drawn_at_once()
    shown = len(results.confidence) if view.keep is None else int(np.count_nonzero(view.keep))
    if not thinned_view(view, shown, limit) and view.shown_as != "thumbnails":
        view = dataclasses.replace(view, zoom=None)  # every point is drawn: the zoom changes nothing
    return _map_figure(results_key(results), state.digest(), view.key(), limit, results, state, view)


def group_codes(results: RunResults, state: CuratedState, colour: str,
                rows: slice | np.ndarray = slice(None)) -> tuple[np.ndarray, np.ndarray] | None:
    """The legend groups of the images ``rows`` under ``colour`` as codes into names: ``(codes,
    names)``, the groups being ``names[codes]`` (None: a colour scale, no groups)."""
    if colour == "cluster":
        titles = cluster_titles(state)
        return state.clusters[rows], np.array([titles.get(c, "") for c in range(state.num_cluster_ids)], dtype=object)
    if colour == "curated label":
        return state.label_codes(rows)
    if colour == "true label":
        return results.images.labels[rows], np.asarray(results.class_names, dtype=object)
    return None


def point_groups(results: RunResults, state: CuratedState, colour: str, rows: np.ndarray) -> np.ndarray | None:
    """The legend group of the images ``rows`` under ``colour`` ``(len(rows),)`` (None: a colour scale)."""
    coded = group_codes(results, state, colour, rows)
    return None if coded is None else coded[1][coded[0]]


def label_lines(results: RunResults, state: CuratedState, rows: np.ndarray) -> np.ndarray:
    """The label line of the hover of the images ``rows``: their true label, or else their curated one."""
    if results.images.has_labels:
        return np.char.add("true: ", results.true_label_names(rows).astype(str))
    return np.char.add("label: ", state.labels(rows).astype(str))


def hidden_images(results: RunResults, state: CuratedState, colour: str, hidden: list[str]) -> np.ndarray:
    """Mask ``(N,)`` of the images in the legend groups hidden in the browser (``hidden``: the
    groups' names as drawn, escaped)."""
    coded = group_codes(results, state, colour) if hidden else None
    if coded is None:
        return np.zeros(len(results.confidence), dtype=bool)
    codes, names = coded
    gone = set(hidden)
    return np.isin(codes, [code for code, name in enumerate(names) if html_text(str(name)) in gone])


@st.cache_resource(max_entries=6, show_spinner=False)
def _map_figure(run: tuple, curated_digest: str, view_key: tuple, limit: int, _results: RunResults,
                _state: CuratedState, _view: MapView) -> go.Figure:
    results, state, view = _results, _state, _view
    colour = view.colour
    confidence = results.confidence
    n = len(confidence)
    xy = np.asarray(results.projection, dtype=np.float32)
    keep = np.arange(n) if view.keep is None else np.flatnonzero(view.keep)
    thin = thinned_view(view, len(keep), limit)
    drawn = thinned(xy, keep, view.zoom, limit) if thin else keep
    titles = cluster_titles(state)
    text = label_lines(results, state, drawn)
    custom = np.stack([drawn, confidence[drawn], state.clusters[drawn]], 1).astype(np.float32)
    groups = point_groups(results, state, colour, drawn)
    if colour == "cluster":
        group_colour = {titles[c]: c for c in titles}
    elif colour == "true label":
        group_colour = {name: i for i, name in enumerate(results.class_names)}
    else:
        group_colour = stable_colours(state.labels(), state.clusters) if groups is not None else None
    size, opacity = view.size, view.opacity
    if view.shown_as == "density":
        opacity = min(opacity, 0.15)
    figure = scatter(xy[drawn], groups, confidence[drawn] if colour == "confidence" else None, custom, text,
                     group_colour, centre_labels=colour in ("cluster", "curated label"), size=size, opacity=opacity)
    if thin:
        figure.update_layout(meta={"regions": True})
        if view.zoom is not None:  # drawn for these ranges: shown at them when the page opens again
            figure.update_layout(xaxis_range=list(view.zoom[:2]), yaxis_range=list(view.zoom[2:]))
    if view.shown_as == "density":
        counts, x_centres, y_centres = density(xy, keep, view.zoom if thin else None, DENSITY_BINS)
        z = np.where(counts > 0, np.log1p(counts), np.nan).T.astype(np.float32)  # empty bins not drawn
        figure.add_trace(go.Heatmap(x=x_centres.astype(np.float32), y=y_centres.astype(np.float32), z=z,
                                    colorscale=[[0, "#DCE9F5"], [1, "#08306B"]], showscale=False, hoverinfo="skip",
                                    name="density"))
        figure.data = (figure.data[-1], *figure.data[:-1])  # under the points
    if view.shown_as == "thumbnails":
        thumbnails = results.thumbnails()
        for index, (x, y, width, height) in thumbnail_places(xy, keep, view.zoom):
            figure.add_layout_image(source=data_uri(thumbnails[index], THUMBNAIL_PX), x=x, y=y, sizex=width,
                                    sizey=height, xref="x", yref="y", xanchor="center", yanchor="middle",
                                    layer="above")
        if view.zoom is not None:  # redrawn as the user left it: the chart is drawn anew when its figure changes
            figure.update_layout(xaxis_range=list(view.zoom[:2]), yaxis_range=list(view.zoom[2:]))
    selection = None if view.selection is None else np.intersect1d(np.asarray(view.selection, np.int64), drawn)
    found = None if view.found is None else np.array([view.found], dtype=np.int64)
    for name, index, style in (("kept selection", selection, {"color": "rgba(0,0,0,0)", "size": size + 4,
                                "line": {"color": "#262730", "width": 1.5}}),  # outlined where drawn
                               ("found", found, {"color": "#FF4B4B", "size": 18, "symbol": "star",
                                "line": {"color": "white", "width": 1}})):
        if index is not None and len(index):
            figure.add_trace(go.Scattergl(
                x=xy[index, 0], y=xy[index, 1], mode="markers", name=name,
                customdata=np.stack([index, confidence[index], state.clusters[index]], 1).astype(np.float32),
                text=label_lines(results, state, index), marker=style,
                hovertemplate="#%{customdata[0]}<br>%{text}<extra>" + name + "</extra>"))
    return figure
