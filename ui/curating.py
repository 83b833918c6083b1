"""Curation from the pages: the curator's name, the curated state and the version the user acted
on, one edit with its message, and the clusters' titles."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np
import streamlit as st

from scan_core.explore.curation import DB_NAME, CuratedState, Curation, LogUnusable
from scan_core.explore.results import RunResults
from scan_core.explore.review import ReviewQueue, review_queue
from ui.artifacts import results_key
from ui.keys import CLUSTER_TITLES, SEEN_VERSION, SHOWN_VERSION, WHO, WHO_PARAM
from ui.text import markdown_text

MAX_WHO = 100  # the curation log's limit on names


def who_box() -> None:
    """The sidebar's box for the curator's name, kept in the URL (``?who=``): restored after a
    refresh, put back after a page switch (which drops query parameters), like the run."""
    if WHO not in st.session_state and st.query_params.get(WHO_PARAM):
        st.session_state[WHO] = st.query_params[WHO_PARAM][:MAX_WHO]
    name = (st.session_state.get(WHO) or "").strip()
    if name and st.query_params.get(WHO_PARAM) != name:
        st.query_params[WHO_PARAM] = name
    elif not name and WHO_PARAM in st.query_params:
        del st.query_params[WHO_PARAM]
    st.text_input("Your name (recorded with every edit)", key=WHO, placeholder="anonymous", max_chars=MAX_WHO,
                  help="Kept in the page's address (?who=), so a refresh or a bookmark keeps it")


def who() -> str:
    """The curator's name for the edit log (``anonymous`` when none is given)."""
    return (st.session_state.get(WHO) or "").strip()[:MAX_WHO] or "anonymous"


def curation(loaded: RunResults) -> Curation:
    """The run's curation log, opened once per run and log file by this server (opening one checks
    that the log belongs to the run's images, a pass over every image id). A log that cannot be
    opened (damaged, held by another program) is said on the page, which stops there."""
    log = loaded.dir / DB_NAME
    try:
        return _curation(results_key(loaded), log.stat().st_ino if log.exists() else None, loaded)
    except LogUnusable as error:
        unusable(error)


def log_problem(error: LogUnusable) -> str:
    """What the pages say of a curation log they could not read or write: the file, sqlite's words
    and what to do. The file is left as it was."""
    if error.locked:
        what, advice = "is held by another program", "try again when it lets go of the file"
    else:
        what, advice = "is damaged or no curation log", "move it aside to start a new log, or put back a copy of it"
    return (f"The curation log {markdown_text(error.path)} {what} ({markdown_text(error.reason)}). Nothing saved in "
            f"it was changed or lost; {advice}.")


def unusable(error: LogUnusable) -> NoReturn:
    """Say that the run's curation log cannot be used (:func:`log_problem`) and stop the page."""
    st.error(log_problem(error), icon=":material/error:")
    st.stop()


@st.cache_resource(max_entries=4, show_spinner=False)
def _curation(run: tuple, log_inode: int | None, _loaded: RunResults) -> Curation:
    return Curation(_loaded.dir, _loaded.clusters, _loaded.images.ids)


def curated(loaded: RunResults) -> CuratedState:
    """The current curated state (replayed from SQLite each rerun, so other sessions' edits show).

    Pages call it once per run. It also remembers the version this tab's previous script run showed:
    the state the user was looking at when they clicked (:func:`seen_version`).
    """
    try:
        state = curation(loaded).state()
    except LogUnusable as error:
        unusable(error)
    shown = st.session_state.get(SHOWN_VERSION)
    previous = shown["version"] if shown and shown["run"] == str(loaded.dir) else state.version
    st.session_state[SEEN_VERSION] = previous
    st.session_state[SHOWN_VERSION] = {"run": str(loaded.dir), "version": state.version}
    return state


def review(loaded: RunResults, state: CuratedState) -> ReviewQueue:
    """The run's review queue at the curation version on show (reviewed images and outliers left
    out): computed once per run and version, and shared by every session of this server."""
    return _review(loaded, state, results_key(loaded), state.version)


@st.cache_resource(max_entries=8, show_spinner="Ranking the images to review…")
def _review(_loaded: RunResults, _state: CuratedState, run: tuple, version: int) -> ReviewQueue:
    return review_queue(_loaded.probs, _loaded.neighbor_lists(), _state.clusters,
                        skip=_state.reviewed | _state.outliers)


def seen_version() -> int:
    """The curation version on screen when the user acted (see :func:`curated`), for ``seen=``."""
    return int(st.session_state[SEEN_VERSION])


def clusters_changed(loaded: RunResults, state: CuratedState) -> str | None:
    """Why a choice among clusters made on the previous screen cannot be trusted: a message when
    clusters appeared or disappeared since then (another session merged, split or moved; a widget
    would have fallen back to another cluster), else None."""
    seen = seen_version()
    if seen == state.version:
        return None
    store = curation(loaded)
    then = store.state_at(seen)
    if cluster_options(then) == cluster_options(state):
        return None
    gone = sorted(set(cluster_options(then)) - set(cluster_options(state)))
    change = store.history(limit=1)[0]
    what = f"cluster {gone[0]} no longer exists" if gone else "the clusters changed"
    return (f"Not done: {what} (edit #{change['id']} by {markdown_text(change['who'])}, {change['kind']}, after "
            "this page was drawn). The page now shows the current clusters; check your choice and try again.")


def edit(action: Callable[[], Any], done: str | Callable[[Any], str],
         after: Callable[[Any], object] | None = None) -> bool:
    """Run one curation edit; a refused one (StaleEdit, ValueError) or one the log could not take
    (:class:`~scan_core.explore.curation.LogUnusable`) is shown as a message, never a traceback. A
    successful one shows ``done`` (or ``done(result)``: what ``action`` returned, such as a split's
    new cluster), calls ``after(result)`` and reruns the page."""
    try:
        result = action()
    except ValueError as error:  # StaleEdit included
        st.error(f"Not done: {markdown_text(error)}")
        return False
    except LogUnusable as error:
        st.error(f"Not saved: {log_problem(error)}")
        return False
    if after is not None:
        after(result)
    st.toast(done(result) if callable(done) else done)
    st.rerun()
    return True


def cluster_title(state: CuratedState, cluster: int) -> str:
    name = state.names.get(int(cluster))
    return f"{cluster} · {name}" if name else f"cluster {cluster}"


def cluster_box(container, label: str, options: list[int], state: CuratedState, key: str, multi: bool = False,
                **kwargs):
    """A selectbox (``multi``: a multiselect) of the clusters ``options`` titled by
    :func:`cluster_title`, whose choice stays on the same clusters when their titles change (a rename
    in this tab or another). Returns what the box returns.

    Streamlit hands a box's choice back as the title the browser shows. After a rename no option has
    the old title any more, and the box fell back to its first option on the next click: the Clusters
    page showed cluster 0 one click after renaming cluster 5, with Merge one step away. So each box
    remembers the titles it drew (title -> cluster); before drawing, a choice whose title changed,
    or that comes back as an old title, is set again by its cluster id, which also sends the new title
    to the browser."""
    titles = {c: cluster_title(state, c) for c in options}
    drawn = st.session_state.setdefault(CLUSTER_TITLES, {}).setdefault(key, {})
    if key in st.session_state:
        value = st.session_state[key]
        values = list(value or []) if multi else [value]
        clusters = [drawn.get(v) if isinstance(v, str) else v for v in values]
        stale = any(isinstance(v, str) or (v in titles and drawn.get(titles[v]) != v) for v in values)
        if stale and all(c in titles for c in clusters):
            st.session_state[key] = clusters if multi else clusters[0]
    drawn.update({title: c for c, title in titles.items()})
    widget = container.multiselect if multi else container.selectbox
    return widget(label, options, format_func=lambda c: titles.get(c, str(c)), key=key, **kwargs)


def cluster_titles(state: CuratedState) -> dict[int, str]:
    """:func:`cluster_title` of every cluster with members."""
    return {c: cluster_title(state, c) for c in cluster_options(state)}


def cluster_options(state: CuratedState) -> list[int]:
    """Cluster ids that have members in the curated state."""
    return np.flatnonzero(state.cluster_sizes()).tolist()
