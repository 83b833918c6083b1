"""The Embedding page's map: a WebGL scatter of the 2-D projection, coloured by cluster, curated
label, true label or confidence, described by a frozen :class:`MapView` and cached by it.

Three ways to show it (:data:`SHOWN_AS`): ``points``; ``density``, the points' 2-D histogram under
faint points (for many points, where dots hide each other; selection and hover still work); and
``thumbnails``, the images themselves spread over the part of the map on screen, as in a sprite
view: the one nearest the centre of every cell of a :data:`THUMBNAIL_GRID` grid (zoom in for more of
a region's images).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import plotly.colors as pc
import plotly.graph_objects as go
import streamlit as st

from scan_core.explore.curation import CuratedState
from scan_core.explore.results import RunResults
from ui.curating import cluster_titles
from ui.gallery import data_uri
from ui.runs import results_key
from ui.text import html_text

COLOURINGS = ("cluster", "curated label", "confidence", "true label")
SHOWN_AS = ("points", "density", "thumbnails")
THUMBNAIL_GRID = 12        # cells a side of the thumbnails view: at most 144 images on screen
THUMBNAIL_PX = 48          # the pixels of each
DENSITY_BINS = 120         # bins a side of the density view


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
        zoom = self.zoom if self.shown_as == "thumbnails" else None  # the other views draw all the map
        return self.colour, self.filters, self.size, self.opacity, selection, self.found, self.shown_as, zoom


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


def map_figure(results: RunResults, state: CuratedState, view: MapView) -> go.Figure:
    """The map of ``results`` in the curated ``state`` as ``view`` says, built once per run, curated
    state and view (a cached figure saves its build, about 0.1 s for 70k points, on every other rerun)."""
    return _map_figure(results_key(results), state.digest(), view.key(), results, state, view)


@st.cache_resource(max_entries=6, show_spinner=False)
def _map_figure(run: tuple, curated_digest: str, view_key: tuple, _results: RunResults, _state: CuratedState,
                _view: MapView) -> go.Figure:
    results, state, view = _results, _state, _view
    colour = view.colour
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
    keep = np.arange(len(confidence)) if view.keep is None else np.flatnonzero(view.keep)
    size, opacity = view.size, view.opacity
    xy = np.asarray(results.projection, dtype=np.float32)
    if view.shown_as == "density":
        opacity = min(opacity, 0.15)
    figure = scatter(xy[keep], None if groups is None else groups[keep],
                     confidence[keep] if colour == "confidence" else None, custom[keep], text[keep], group_colour,
                     centre_labels=colour in ("cluster", "curated label"), size=size, opacity=opacity)
    if view.shown_as == "density":
        figure.add_trace(go.Histogram2d(x=xy[keep, 0], y=xy[keep, 1], nbinsx=DENSITY_BINS, nbinsy=DENSITY_BINS,
                                        colorscale=[[0, "rgba(255,255,255,0)"], [1e-9, "#DCE9F5"], [1, "#08306B"]],
                                        showscale=False, hoverinfo="skip", name="density"))
        figure.data = (figure.data[-1], *figure.data[:-1])  # under the points
    if view.shown_as == "thumbnails":
        thumbnails = results.thumbnails()
        for index, (x, y, width, height) in thumbnail_places(xy, keep, view.zoom):
            figure.add_layout_image(source=data_uri(thumbnails[index], THUMBNAIL_PX), x=x, y=y, sizex=width,
                                    sizey=height, xref="x", yref="y", xanchor="center", yanchor="middle",
                                    layer="above")
        if view.zoom is not None:  # redrawn as the user left it: the chart is drawn anew when its figure changes
            figure.update_layout(xaxis_range=list(view.zoom[:2]), yaxis_range=list(view.zoom[2:]))
    found = None if view.found is None else [view.found]
    for name, index, style in (("kept selection", view.selection, {"color": "rgba(0,0,0,0)", "size": size + 4,
                                "line": {"color": "#262730", "width": 1.5}}),
                               ("found", found, {"color": "#FF4B4B", "size": 18, "symbol": "star",
                                "line": {"color": "white", "width": 1}})):
        if index is not None and len(index):
            index = np.asarray(index)
            figure.add_trace(go.Scattergl(x=results.projection[index, 0], y=results.projection[index, 1],
                                          mode="markers", name=name, customdata=custom[index], text=text[index],
                                          hovertemplate="#%{customdata[0]}<br>%{text}<extra>" + name + "</extra>",
                                          marker=style))
    return figure
