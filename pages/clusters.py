"""Clusters: an overview of every cluster, then one cluster in depth — name, prototypes, members
by confidence, the least confident for review; merge two clusters or split one in two (k-means,
or the members the user picked)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from scan_core.explore.curation import split_in_two
from ui.curating import (
    cluster_box,
    cluster_options,
    cluster_title,
    clusters_changed,
    curated,
    curation,
    edit,
    seen_version,
    who,
)
from ui.detail import detail_view
from ui.gallery import data_uri, gallery, open_in_neighbours
from ui.names import name_suggestion, names_overview
from ui.navigation import through_navigation
from ui.new_cluster import new_cluster_form
from ui.runs import require_results
from ui.selection import picked, set_picked
from ui.suggest import suggestion_section
from ui.text import heading, markdown_text

PROTOTYPES = 12
MEMBER_FILTERS = ("all", "not reviewed", "reviewed")
ROW_PX, HEADER_PX, ROWS_SHOWN = 52, 36, 20  # the overview table: row and header height, rows shown at once
CLUSTER = "cluster"              # the Cluster box
CLUSTER_SHOWN = "cluster_shown"  # (run, cluster) the previous screen showed
NEXT_CLUSTER = "next_cluster"    # the cluster to show after the user's own merge or split
TABLE_OPENED = "clusters_table_opened"  # the cluster a click on the overview's row last opened
PENDING_EDIT = "pending_edit"    # a merge or split waiting for its confirmation


def overview(results, state) -> None:
    thumbs = results.thumbnails()
    rows = []
    for row in results.cluster_table(state.clusters):
        top = results.members(state.clusters, row["cluster"])[:1]
        rows.append({"prototype": data_uri(thumbs[top[0]]) if len(top) else None,
                     "cluster": row["cluster"], "name": state.names.get(row["cluster"], ""),
                     "size": row["size"], "mean confidence": row["mean_confidence"],
                     "neighbour agreement": row.get("neighbour_agreement")})
    height = HEADER_PX + ROW_PX * min(len(rows), ROWS_SHOWN) + 2  # every row up to ROWS_SHOWN, no scrolling
    event = st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", row_height=ROW_PX, height=height,
                         on_select="rerun",
                         selection_mode="single-row", key="clusters_table", column_config={
        "prototype": st.column_config.ImageColumn("", width="small"),
        "mean confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f"),
        "neighbour agreement": st.column_config.ProgressColumn(
            min_value=0.0, max_value=1.0, format="%.2f",
            help="Share of the members' mined neighbours that lie in the same cluster")})
    picked = event.selection.rows
    if picked and st.session_state.get(TABLE_OPENED) != rows[picked[0]]["cluster"]:
        st.session_state[TABLE_OPENED] = rows[picked[0]]["cluster"]
        st.session_state[CLUSTER] = rows[picked[0]]["cluster"]  # a click on a row opens that cluster below


def rename(results, state, cluster: int) -> None:
    with st.form(f"rename_{cluster}", border=False):
        left, right = st.columns([4, 1], vertical_alignment="bottom")
        name = left.text_input("Name", value=state.names.get(cluster, ""), placeholder="e.g. Sneaker",
                               key=f"name_{cluster}", max_chars=100)
        if right.form_submit_button("Save name", icon=":material/label:") and name.strip():
            edit(lambda: curation(results).name_cluster(cluster, name.strip(), who(), seen=seen_version()),
                 f"Cluster {cluster} renamed")


def forget_typed_names(clusters: list[int]) -> None:
    """After names were accepted: the name boxes of ``clusters`` show their new names."""
    for cluster in clusters:
        st.session_state.pop(f"name_{cluster}", None)


def ask_merge(results, state, source: int, target: int) -> None:
    """Keep a merge to confirm: what the user saw (both clusters, the version) goes with it."""
    st.session_state[PENDING_EDIT] = {
        "run": str(results.dir), "kind": "merge", "source": source, "target": target, "seen": seen_version(),
        "text": f"Move all {int(state.cluster_sizes()[source]):,} images of {cluster_title(state, source)} "
                f"into {cluster_title(state, target)}?"}


def ask_split(results, state, cluster: int, members: np.ndarray) -> None:
    """Compute the split now and keep it to confirm, with the version the user saw."""
    if results.features is None:
        st.error("This run has no features to split on.")
        return
    moving = split_in_two(np.asarray(results.features), members)
    st.session_state[PENDING_EDIT] = {
        "run": str(results.dir), "kind": "split", "cluster": cluster, "images": moving.tolist(),
        "seen": seen_version(),
        "text": f"Split {cluster_title(state, cluster)} ({len(members):,} images): {len(moving):,} of them "
                "(k-means with 2 on their features) move to a new cluster?"}


def confirm_pending(results) -> None:
    """The merge or split waiting for confirmation, with Confirm / Cancel; it acts on what the
    user saw when they asked, or is refused if another session changed those clusters since."""
    pending = st.session_state.get(PENDING_EDIT)
    if not pending or pending["run"] != str(results.dir):
        return
    with st.container(border=True):
        st.text(pending["text"] + " You can undo it on Curate & export.")
        left, right, _ = st.columns([1, 1, 4])
        cancel = right.button("Cancel", key="pending_cancel")
        confirm = left.button(f"Confirm {pending['kind']}", type="primary", key="pending_confirm")
    if cancel:
        del st.session_state[PENDING_EDIT]
        st.rerun()
    if not confirm:
        return
    del st.session_state[PENDING_EDIT]
    store = curation(results)
    if pending["kind"] == "merge":
        edit(lambda: store.merge(pending["source"], pending["target"], who(), seen=pending["seen"]),
             f"Merged cluster {pending['source']} into {pending['target']}; showing {pending['target']}",
             after=lambda _: show_next(results, pending["target"]))
    else:
        edit(lambda: store.split(pending["cluster"], pending["images"], who(), seen=pending["seen"]),
             lambda new: f"Split: {len(pending['images']):,} images moved to the new cluster {new}; showing it",
             after=lambda new: show_next(results, new))


def show_next(results, cluster: int) -> None:
    """After the user's own merge or split: show ``cluster`` (the one the images went into) next."""
    st.session_state[NEXT_CLUSTER] = int(cluster)
    st.session_state[CLUSTER_SHOWN] = (str(results.dir), int(cluster))


def follow_vanished(results, state, gone: int, clusters: list[int]) -> None:
    """The cluster the previous screen showed has no images any more (another session merged, moved
    or undid it): show the cluster most of its images went to, say so, and name what the user had
    typed for it that was not saved."""
    then = curation(results).state_at(seen_version())
    moved = state.clusters[then.members(gone)]
    now = int(np.bincount(moved).argmax()) if len(moved) else clusters[0]
    typed = (st.session_state.get(f"name_{gone}") or "").strip()
    unsaved = f" The name you typed for it, “{markdown_text(typed)}”, was not saved." if typed else ""
    st.warning(f"Cluster {gone} no longer exists: another session merged, moved or undid it. Showing "
               f"{markdown_text(cluster_title(state, now))}, where most of its images are now.{unsaved}",
               icon=":material/info:")
    st.session_state[CLUSTER] = now  # set, not dropped: the box in the browser shows it too


def main() -> None:
    results = require_results(("probs",))
    state = curated(results)
    detail_view(results, "clusters")
    st.title("Clusters")
    if warning := results.metrics.final and results.metrics.final.warning:
        st.warning(warning, icon=":material/warning:")
    overview(results, state)
    names_overview(results, state, "accept_all_names", after=forget_typed_names)
    suggestion_section(results.dir, results.config.num_clusters)  # the K it trained with, the suggested one
    clusters = cluster_options(state)
    if st.session_state.get(NEXT_CLUSTER) in clusters:  # before the box is drawn: the only time it may be set
        st.session_state[CLUSTER] = st.session_state.pop(NEXT_CLUSTER)
    shown = st.session_state.get(CLUSTER_SHOWN)  # the cluster the previous screen showed
    if shown is not None and shown[0] == str(results.dir) and shown[1] not in clusters:
        follow_vanished(results, state, shown[1], clusters)
    cluster = cluster_box(st, "Cluster", clusters, state, CLUSTER)
    st.session_state[CLUSTER_SHOWN] = (str(results.dir), cluster)
    confirm_pending(results)
    members = results.members(state.clusters, cluster)
    confidence = results.confidence
    heading(cluster_title(state, cluster), level=2)
    cols = st.columns(3)
    cols[0].metric("Members", f"{len(members):,}")
    cols[1].metric("Mean confidence", f"{confidence[members].mean():.3f}" if len(members) else "–")
    agreement = results.neighbor_agreement(state.clusters)
    if agreement is not None and len(members):
        cols[2].metric("Neighbour agreement", f"{agreement[members].mean():.3f}")
    name_suggestion(results, state, cluster, after=forget_typed_names)
    rename(results, state, cluster)

    caption = lambda i: f"{confidence[i]:.2f}"
    st.subheader("Prototypes")
    left, right = st.columns(2)
    with left:
        st.caption("Most confident members")
        gallery(results, members[:PROTOTYPES], f"proto_conf_{cluster}", caption)
    with right:
        st.caption("Nearest the cluster's mean feature")
        gallery(results, results.central_members(state.clusters, cluster, PROTOTYPES), f"proto_centre_{cluster}",
                caption)
    tab_members, tab_review = st.tabs(["Members by confidence", "Least confident (review)"])
    with tab_members:
        which = st.segmented_control("Members", MEMBER_FILTERS, default=MEMBER_FILTERS[0], key="member_filter",
                                     help="reviewed: accepted or moved one by one (their cluster is your word)")
        done = np.isin(members, np.fromiter(state.reviewed, dtype=np.int64))
        listed = members[~done] if which == "not reviewed" else members[done] if which == "reviewed" else members
        shown = gallery(results, listed, f"members_{cluster}", caption)
        open_in_neighbours(results, shown, f"members_open_{cluster}")
    with tab_review:
        gallery(results, members[::-1], f"review_{cluster}", caption)

    st.subheader("Merge or split")
    left, right = st.columns(2)
    with left:
        others = [c for c in clusters if c != cluster]
        target = cluster_box(st, "Merge this cluster into", others, state, f"merge_target_{cluster}")
        merge = st.button("Merge…", icon=":material/merge:", disabled=not others)
    with right:
        st.caption("Split runs k-means with 2 on this cluster's features; the second part becomes a new cluster.")
        split = st.button("Split in two…", icon=":material/call_split:", disabled=len(members) < 2)
    if merge or split:
        changed = clusters_changed(results, state)  # a widget may have fallen back to another cluster
        if changed:
            st.error(changed)
        elif merge:
            ask_merge(results, state, cluster, target)
            st.rerun()
        else:
            ask_split(results, state, cluster, members)
            st.rerun()
    split_by_selection(results, cluster, members)


def split_by_selection(results, cluster: int, members: np.ndarray) -> None:
    """The thumbnails picked (Ctrl- or Shift-click) among ``cluster``'s ``members`` ``(M,)`` split off
    into a new cluster, when some are picked and all lie in it (and not all of it)."""
    chosen = np.asarray(picked(results), dtype=np.int64)
    if not len(chosen):
        st.caption("Or split by your own selection: Ctrl- or Shift-click the members that belong apart.")
    elif np.isin(chosen, members).all() and len(chosen) < len(members):
        new_cluster_form(results, chosen, f"split_selection_{cluster}", seen_version(),
                         f"Split by selection ({len(chosen):,} picked)",
                         after=lambda new: (set_picked(results, []), show_next(results, new)))
    else:
        st.caption("Split by selection takes picked images that all lie in this cluster, and not all of it.")


through_navigation()
main()
