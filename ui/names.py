"""Suggested names for the clusters (:mod:`scan_core.explore.names`) on the pages: a cluster's
suggestion with its evidence and a "Use this name" button, "Accept all confident suggestions" (one
edit), and the sentence a run without a classifier gets instead. Every acceptance is a curation
edit with undo; a cluster the user named keeps its name when all are accepted."""
from __future__ import annotations

from collections.abc import Callable
from hashlib import sha256

import numpy as np
import streamlit as st

from scan_core.explore.curation import CuratedState
from scan_core.explore.names import NameSuggestion, RunNames, accept_all, names_input, run_names, unnamed_confident
from scan_core.explore.results import RunResults
from ui.artifacts import results_key
from ui.curating import curation, edit, seen_version, who
from ui.text import markdown_text


def names_of(loaded: RunResults, state: CuratedState) -> RunNames:
    """The run's suggestions for the clusters of ``state``: computed once per run, class scores (or
    zero-shot text embeddings) and clustering (a rename does not recompute them), and shared by every
    session of this server."""
    probs = names_input(loaded)
    clustering = sha256(np.ascontiguousarray(state.clusters, np.int64).tobytes()).hexdigest()
    return _names(loaded, state, results_key(loaded), probs.stat().st_mtime_ns if probs.exists() else 0,
                  clustering, state.num_cluster_ids)


@st.cache_resource(max_entries=8, show_spinner="Naming the clusters…")
def _names(_loaded: RunResults, _state: CuratedState, run: tuple, probs_mtime: int, clustering: str,
           num_ids: int) -> RunNames:
    return run_names(_loaded, _state)


def suggestion_text(suggestion: NameSuggestion) -> str:
    """``cat — 71%: tabby 31%, ...``, or ``no confident name (why); top classes: ...``."""
    if suggestion.name is not None or not suggestion.evidence:
        return suggestion.text()
    return f"{suggestion.text()}; top classes: {suggestion.evidence_text()}"


def name_suggestion(loaded: RunResults, state: CuratedState, cluster: int,
                    after: Callable[[list[int]], object] | None = None) -> None:
    """``cluster``'s suggested name with its evidence and a "Use this name" button (one
    ``name_cluster`` edit at the version on screen); ``after([cluster])`` runs after it is saved. A
    run without names says once why (:func:`names_overview`); nothing is drawn for it here."""
    names = names_of(loaded, state)
    if names.unavailable or cluster >= len(names.suggestions):
        return
    suggestion = names.suggestions[cluster]
    if suggestion.name is None:
        st.caption(f"Suggested name: {markdown_text(suggestion_text(suggestion))}")
        return
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.caption(f"Suggested name: {markdown_text(suggestion_text(suggestion))}")
    if state.names.get(cluster) == suggestion.name:
        right.caption("In use")
    elif right.button("Use this name", key=f"use_name_{cluster}", icon=":material/check:"):
        edit(lambda: curation(loaded).name_cluster(cluster, suggestion.name, who(), seen=seen_version()),
             f"Cluster {cluster} named {markdown_text(suggestion.name)}",
             after=after and (lambda _: after([cluster])))


def names_overview(loaded: RunResults, state: CuratedState, key: str,
                   after: Callable[[list[int]], object] | None = None) -> RunNames:
    """How many clusters have a confident name and an "Accept all confident suggestions" button
    (one ``name_clusters`` edit; clusters the user named keep their names; ``after(the clusters
    named)`` runs after it is saved), or the sentence saying why the run has no names. Returns the
    suggestions."""
    names = names_of(loaded, state)
    if names.unavailable:
        st.info(f"No suggested names: {markdown_text(names.unavailable)}.", icon=":material/label_off:")
        return names
    shown = [s for s in names.suggestions if state.cluster_sizes()[s.cluster]] if names.suggestions else []
    confident = sum(s.name is not None for s in shown)
    waiting = unnamed_confident(names, state)
    left, right = st.columns([3, 2], vertical_alignment="center")
    left.caption(f"Suggested names, from {markdown_text(names.source)}: {confident} of {len(shown)} clusters "
                 f"have a confident one; {len(waiting)} of them wait for a name.")
    if right.button(f"Accept all confident suggestions ({len(waiting)})", key=key, icon=":material/done_all:",
                    disabled=not waiting,
                    help="Names every cluster without a name after its confident suggestion, in one edit "
                         "(one undo); clusters you named keep your names"):
        edit(lambda: accept_all(curation(loaded), names, who(), seen=seen_version()),
             lambda done: f"Named {len(waiting)} clusters (edit #{done})" if done is not None else "Nothing to name",
             after=after and (lambda _: after(sorted(waiting))))
    return names
