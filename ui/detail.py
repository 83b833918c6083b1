"""The image detail view, as in FiftyOne: click any gallery thumbnail for the image at full size
with its id, path, cluster, confidence, curated and true label, its mined neighbours, previous / next
(arrow keys) through the gallery it came from, and the edits right there: accept (A), move to cluster
0-9 by its number key, or to any cluster from a list, label, outlier.

Galleries (:mod:`ui.gallery`) are plain HTML; :func:`detail_view` mounts one small listener that
turns a click on a thumbnail (``data-index``, ``data-gallery``) into a trigger value.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from scan_core.explore.results import RunResults
from ui.gallery import display_image
from ui.state import cluster_options, cluster_title, curation, edit, who
from ui.text import heading, text_lines

FULL_PX = 320
NEIGHBOURS = 10

_CLICKS_JS = """
export default function (component) {
  const send = component.setTriggerValue;
  const attach = () => document.querySelectorAll('.scan-gallery figure[data-index]').forEach((figure) => {
    if (figure.__scanOpen) return;
    figure.__scanOpen = true;
    figure.addEventListener('click', () => send('opened', {index: Number(figure.dataset.index),
                                                           gallery: figure.dataset.gallery}));
  });
  attach();
  const timer = setInterval(attach, 400);  // galleries are redrawn on every rerun
  return () => clearInterval(timer);
}
"""
_clicks = st.components.v2.component("scan_gallery_clicks", js=_CLICKS_JS)


def detail_view(results: RunResults, page: str) -> None:
    """Mount the click listener of ``page``'s galleries; show the detail view of the clicked image
    until the user closes it or leaves the page (it stays open across the page's own reruns)."""
    opened = _clicks(key="gallery_clicks", on_opened_change=lambda: None).opened
    if isinstance(opened, dict):  # what the browser sends is input: a whole index inside the run
        index, gallery = opened.get("index"), opened.get("gallery")
        if isinstance(index, int) and 0 <= index < len(results.images) and isinstance(gallery, str):
            st.session_state["detail"] = {"run": str(results.dir), "page": page, "index": index, "gallery": gallery}
    detail = st.session_state.get("detail")
    if detail and (detail["run"], detail["page"]) == (str(results.dir), page):
        image_dialog(results)
    elif detail:
        close_detail()  # left for another page or run


def close_detail() -> None:
    st.session_state.pop("detail", None)


@st.dialog("Image", width="large", on_dismiss=close_detail)
def image_dialog(results: RunResults) -> None:
    """The detail view of ``st.session_state["detail"]`` (a dialog: its buttons rerun only it)."""
    detail = st.session_state["detail"]
    order = gallery_order(detail)
    position = order.index(detail["index"])
    back, where, forward = st.columns([1, 2, 1], vertical_alignment="center")
    back.button("Previous", icon=":material/arrow_back:", shortcut="left", disabled=position == 0,
                key="detail_previous", on_click=step, args=(-1,))
    where.caption(f"{position + 1:,} of {len(order):,} in this gallery · ← → next, A accept, 0-9 move, Esc close")
    forward.button("Next", icon=":material/arrow_forward:", shortcut="right", disabled=position >= len(order) - 1,
                   key="detail_next", on_click=step, args=(1,))
    show_image(results, detail["index"])


def gallery_order(detail: dict) -> list[int]:
    """The images of the gallery the detail view was opened from (the image alone if unknown)."""
    order = st.session_state.get("gallery_orders", {}).get(detail["gallery"], [])
    return order if detail["index"] in order else [detail["index"]]


def step(offset: int) -> None:
    """Previous / next (a callback: it runs before the dialog is drawn, so its buttons match)."""
    detail = st.session_state["detail"]
    order = gallery_order(detail)
    position = min(max(order.index(detail["index"]) + offset, 0), len(order) - 1)
    st.session_state["detail"] = {**detail, "index": int(order[position])}


def dialog_state(results: RunResults):
    """The curated state now, and the version the dialog showed when the user acted (its own
    reruns do not pass through the page's :func:`ui.state.curated`)."""
    state = curation(results).state()
    seen = st.session_state.get("detail_shown_version", state.version)
    st.session_state["detail_shown_version"] = state.version
    return state, seen


def show_image(results: RunResults, index: int) -> None:
    state, seen = dialog_state(results)
    cluster = int(state.clusters[index])
    true_names = results.true_label_names()
    picture, facts = st.columns([1, 1])
    picture.image(display_image(results.images.images[index], FULL_PX))
    with facts:
        heading(f"{results.images.ids[index]}", level=3)
        text_lines([f"#{index}" + (f" · {results.images.paths[index]}" if results.images.paths[index] else ""),
                    f"cluster: {cluster_title(state, cluster)}",
                    f"confidence: {results.confidence[index]:.3f} (model cluster {int(results.clusters[index])})",
                    f"curated label: {state.labels()[index]}"
                    + (" · outlier" if index in state.outliers else "")
                    + (" · reviewed" if index in state.reviewed else "")]
                   + ([f"true label: {true_names[index]}"] if true_names is not None else []), first_bold=False)
        actions(results, state, seen, index, cluster)
    if results.neighbors is not None:
        st.caption(f"Its {NEIGHBOURS} nearest mined neighbours")
        near = np.asarray(results.neighbors[index][:NEIGHBOURS])
        st.image([display_image(results.thumbnails()[i], 64) for i in near],
                 caption=[cluster_title(state, int(state.clusters[i])) for i in near])


def actions(results: RunResults, state, seen: int, index: int, cluster: int) -> None:
    """Accept the image where it is, move it, give it a label, flag it: curation edits like the
    others (history, undo). Accept and the number keys go on to the next image."""
    store = curation(results)
    others = [c for c in cluster_options(state) if c != cluster]
    if st.button("Accept its cluster", icon=":material/check:", shortcut="a", key=f"detail_accept_{index}"):
        edit(lambda: store.accept([index], cluster, who()), f"#{index} accepted in {cluster_title(state, cluster)}",
             after=lambda: step(1))
    numbered = [c for c in others if c < 10]
    if numbered:
        st.caption("Move to cluster (its number key)")
        for column, target in zip(st.columns(len(numbered)), numbered):
            if column.button(str(target), shortcut=str(target), help=cluster_title(state, target),
                             key=f"detail_to_{target}_{index}"):
                edit(lambda t=target: store.move([index], t, who(), seen=seen),
                     f"#{index} moved to {cluster_title(state, target)}", after=lambda: step(1))
    with st.form(f"detail_move_{index}", border=False):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        target = left.selectbox("Move to cluster", others, format_func=lambda c: cluster_title(state, c))
        if right.form_submit_button("Move") and target is not None:
            edit(lambda: store.move([index], int(target), who(), seen=seen), f"#{index} moved")
    with st.form(f"detail_label_{index}", border=False):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        label = left.text_input("Label", max_chars=100, placeholder="its own label")
        if right.form_submit_button("Set") and label.strip():
            edit(lambda: store.relabel([index], label.strip(), who()), f"#{index} labelled")
    flagged = index in state.outliers
    if st.button("Unmark outlier" if flagged else "Mark as outlier", key=f"detail_outlier_{index}"):
        edit(lambda: store.mark_outliers([index], not flagged, who()), f"#{index} {'un' if flagged else ''}marked")
