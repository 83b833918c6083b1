"""The image detail view, as in FiftyOne: click any gallery thumbnail for the image at full size
with its id, path, cluster, confidence, curated and true label, its mined neighbours, previous / next
(arrow keys) through the gallery it came from, and the edits right there: accept (A), move to cluster
0-9 by its number key (the button shows the cluster's name), or to any cluster by its typed number or
name, label, outlier.

Galleries (:mod:`ui.gallery`) are plain HTML; :func:`detail_view` mounts one small listener that
turns a click on a thumbnail (``data-index``, ``data-gallery``) into a trigger value: ``opened``,
or ``picked``: the thumbnails picked or unpicked with Ctrl-click (Shift-click: the range from the last
pick), outlined at once in the browser and sent together a moment after the last, for the picks that
:func:`picks_bar` moves, labels or makes a new cluster of in one edit.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import streamlit as st

from scan_core.explore.results import RunResults
from ui.curating import cluster_options, cluster_title, curation, edit, seen_version, who
from ui.gallery import display_image
from ui.keys import DETAIL, DETAIL_SHOWN_VERSION, GALLERY_ORDERS, SEEN_VERSION
from ui.listeners import component
from ui.new_cluster import new_cluster_form
from ui.selection import picked, selection, set_picked, set_selection
from ui.text import heading, markdown_text, text_lines

FULL_PX = 320
NEIGHBOURS = 10
KEYS_A_ROW = 3  # number-key buttons side by side, each wide enough for a cluster's whole name, wrapped
PICKS_BAR_CSS = """<style>
.st-key-picks_bar {position: fixed; bottom: 12px; right: 24px; width: min(900px, calc(100vw - 48px)); z-index: 99;
  background: white; box-shadow: 0 4px 16px rgba(0, 0, 0, .18);}
.stMainBlockContainer {padding-bottom: 320px;}
</style>"""  # the picks' bar stays in view wherever the page is scrolled, above the page's end
NUMBER_KEYS_CSS = """<style>
[class*="st-key-detail_keys_"] button {height: auto;}
[class*="st-key-detail_keys_"] button [data-testid="stMarkdownContainer"],
[class*="st-key-detail_keys_"] button p {white-space: normal; overflow: visible; text-overflow: clip;
  overflow-wrap: anywhere;}
</style>"""  # Streamlit cuts a button's label with an ellipsis: the number keys wrap their cluster's name

@dataclasses.dataclass(frozen=True)
class DetailRequest:
    """The open detail view: the run, the page it was opened on, the image and the gallery it came
    from (whose order previous / next follow)."""
    run: str
    page: str
    index: int
    gallery: str


_clicks = component("scan_gallery_clicks", "gallery_clicks")


def detail_view(results: RunResults, page: str) -> None:
    """Mount the click listener of ``page``'s galleries; show the detail view of the clicked image
    until the user closes it or leaves the page (it stays open across the page's own reruns)."""
    clicks = _clicks(key="gallery_clicks", on_opened_change=lambda: None, on_picked_change=lambda: None)
    opened, picks = clicked(results, clicks.opened), sent_picks(results, clicks.picked)
    if opened is not None:
        open_detail(results, page, *opened)
    if picks:
        chosen = picked(results)
        for index, on in picks:
            chosen = [i for i in chosen if i != index] + ([index] if on else [])
        set_picked(results, chosen)
    picks_bar(results)
    detail = st.session_state.get(DETAIL)
    if detail and (detail.run, detail.page) == (str(results.dir), page):
        image_dialog(results)
    elif detail:
        close_detail()  # left for another page or run


def clicked(results: RunResults, sent) -> tuple[int, str] | None:
    """``(index, gallery)`` of a click the browser sent, or None: what it sends is input, so only a
    whole index inside the run and a gallery name pass."""
    if not isinstance(sent, dict):
        return None
    index, gallery = sent.get("index"), sent.get("gallery")
    if isinstance(index, int) and 0 <= index < len(results.images) and isinstance(gallery, str):
        return index, gallery
    return None


def sent_picks(results: RunResults, sent) -> list[tuple[int, bool]]:
    """The picks the browser sent at once, in the order made: ``(index, picked)`` for each thumbnail
    picked or unpicked (a Shift-click's range is one pick each). What it sends is input: anything but
    a whole index inside the run with a true / false is left out."""
    ops = sent.get("ops") if isinstance(sent, dict) else None
    if not isinstance(ops, list):
        return []
    return [(op[0], op[1]) for op in ops if isinstance(op, list) and len(op) == 2 and isinstance(op[0], int)
            and not isinstance(op[0], bool) and 0 <= op[0] < len(results.images) and isinstance(op[1], bool)]


def picks_bar(results: RunResults) -> None:
    """The thumbnails picked with Ctrl- or Shift-click, moved or labelled together in one edit."""
    chosen = picked(results)
    if not chosen:
        return
    store = curation(results)
    state = store.state()
    st.html(PICKS_BAR_CSS)
    with st.container(border=True, key="picks_bar"):
        st.markdown(f"**{len(chosen):,} image{'s' if len(chosen) > 1 else ''} picked** (Ctrl-click a thumbnail "
                    "to pick or unpick it, Shift-click to pick the ones from the last pick to it)")
        move, label, clear = st.columns([2, 2, 1], vertical_alignment="bottom")
        with move.form("picks_move", border=False):
            typed = st.text_input("Move them to cluster", placeholder="its number or name, then Enter")
            if st.form_submit_button("Move") and typed.strip():
                target = typed_cluster(state, typed)
                if target is None:
                    st.error(f"No cluster {markdown_text(typed.strip()[:60])}")
                else:
                    edit(lambda: store.move(chosen, target, who(), seen=seen_version()), f"{len(chosen):,} images moved to "
                         f"{cluster_title(state, target)}", after=lambda _: set_picked(results, []))
        with label.form("picks_label", border=False):
            name = st.text_input("Give them the label", max_chars=100)
            if st.form_submit_button("Set") and name.strip():
                edit(lambda: store.relabel(chosen, name.strip(), who()), f"{len(chosen):,} images labelled",
                     after=lambda _: set_picked(results, []))
        if clear.button("Unpick all", key="picks_clear"):
            set_picked(results, [])
            st.rerun()
        drop_from_selection(results, chosen)
        new_cluster_form(results, chosen, "picks_new_cluster", st.session_state.get(SEEN_VERSION),
                         "New cluster from them", after=lambda _: set_picked(results, []))


def drop_from_selection(results: RunResults, chosen: list[int]) -> None:
    """A button that takes the picked images out of the map's selection (a lasso trimmed by a few
    images), when some of them are in it."""
    selected = selection(results)
    dropped = np.intersect1d(selected, np.asarray(chosen, dtype=np.int64))
    if len(dropped) and st.button(f"Drop {len(dropped):,} from the map selection", icon=":material/remove_selection:",
                                  key="picks_drop", help=f"The selection keeps its other "
                                                         f"{len(selected) - len(dropped):,} images"):
        set_selection(results, np.setdiff1d(selected, dropped))
        set_picked(results, [i for i in chosen if i not in set(dropped.tolist())])
        st.rerun()


def open_detail(results: RunResults, page: str, index: int, gallery: str, order: list[int] | None = None) -> None:
    """Open the detail view of image ``index`` on ``page``, from ``gallery`` (``order``: that
    gallery's images, if it is none drawn by :func:`ui.gallery.gallery`)."""
    if order is not None:
        st.session_state.setdefault(GALLERY_ORDERS, {})[gallery] = [int(i) for i in order]
    st.session_state[DETAIL] = DetailRequest(str(results.dir), page, int(index), gallery)


def close_detail() -> None:
    st.session_state.pop(DETAIL, None)


@st.dialog("Image", width="large", on_dismiss=close_detail)
def image_dialog(results: RunResults) -> None:
    """The detail view of the open :class:`DetailRequest` (a dialog: its buttons rerun only it)."""
    detail = st.session_state[DETAIL]
    order = gallery_order(detail)
    position = order.index(detail.index)
    back, where, forward = st.columns([1, 2, 1], vertical_alignment="center")
    back.button("Previous", icon=":material/arrow_back:", shortcut="left", disabled=position == 0,
                key="detail_previous", on_click=step, args=(-1,))
    where.caption(f"{position + 1:,} of {len(order):,} in this gallery · ← → next, A accept, 0-9 move, Esc close")
    forward.button("Next", icon=":material/arrow_forward:", shortcut="right", disabled=position >= len(order) - 1,
                   key="detail_next", on_click=step, args=(1,))
    show_image(results, detail.index)


def gallery_order(detail: DetailRequest) -> list[int]:
    """The images of the gallery the detail view was opened from (the image alone if unknown)."""
    order = st.session_state.get(GALLERY_ORDERS, {}).get(detail.gallery, [])
    return order if detail.index in order else [detail.index]


def step(offset: int) -> None:
    """Previous / next (a callback: it runs before the dialog is drawn, so its buttons match)."""
    detail = st.session_state[DETAIL]
    order = gallery_order(detail)
    position = min(max(order.index(detail.index) + offset, 0), len(order) - 1)
    st.session_state[DETAIL] = dataclasses.replace(detail, index=int(order[position]))


def number_label(state, cluster: int) -> str:
    """A number key's button: the cluster's number and its whole name (the button wraps it)."""
    name = state.names.get(int(cluster), "")
    return f"{cluster} · {name}" if name else str(cluster)


def typed_cluster(state, text: str) -> int | None:
    """The cluster with members that ``text`` names: its number, else its name (any case)."""
    text = text.strip()
    options = cluster_options(state)
    if text.isascii() and text.isdigit():
        return int(text) if int(text) in options else None
    named = [c for c in options if state.names.get(c, "").casefold() == text.casefold()]
    return named[0] if len(named) == 1 else None


def dialog_state(results: RunResults):
    """The curated state now, and the version the dialog showed when the user acted (its own
    reruns do not pass through the page's :func:`ui.curating.curated`)."""
    state = curation(results).state()
    seen = st.session_state.get(DETAIL_SHOWN_VERSION, state.version)
    st.session_state[DETAIL_SHOWN_VERSION] = state.version
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
             after=lambda _: step(1))
    numbered = [c for c in others if c < 10]
    if numbered:
        st.caption("Move to cluster (its number key)")
        st.html(NUMBER_KEYS_CSS)
        keys = st.container(key=f"detail_keys_{index}")
        columns = [column for _ in range(0, len(numbered), KEYS_A_ROW) for column in keys.columns(KEYS_A_ROW)]
        for column, target in zip(columns, numbered):
            if column.button(number_label(state, target), shortcut=str(target), help=cluster_title(state, target),
                             key=f"detail_to_{target}_{index}", width="stretch"):
                edit(lambda t=target: store.move([index], t, who(), seen=seen),
                     f"#{index} moved to {cluster_title(state, target)}", after=lambda _: step(1))
    with st.form(f"detail_move_{index}", border=False):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        typed = left.text_input("Move to cluster", placeholder="its number or name, then Enter",
                                help="Any cluster, also those past 9 that have no number key")
        if right.form_submit_button("Move") and typed.strip():
            target = typed_cluster(state, typed)
            if target is None:
                st.error(f"No cluster {markdown_text(typed.strip()[:60])}")
            else:
                edit(lambda: store.move([index], target, who(), seen=seen),
                     f"#{index} moved to {cluster_title(state, target)}", after=lambda _: step(1))
    with st.form(f"detail_label_{index}", border=False):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        label = left.text_input("Label", max_chars=100, placeholder="its own label")
        if right.form_submit_button("Set") and label.strip():
            edit(lambda: store.relabel([index], label.strip(), who()), f"#{index} labelled")
    new_cluster_form(results, [index], f"detail_new_cluster_{index}", seen, "New cluster from this image")
    flagged = index in state.outliers
    if st.button("Unmark outlier" if flagged else "Mark as outlier", key=f"detail_outlier_{index}"):
        edit(lambda: store.mark_outliers([index], not flagged, who()), f"#{index} {'un' if flagged else ''}marked")
