"""Clusters: an overview of every cluster, then one cluster in depth — name, prototypes, members
by confidence, the least confident for review; merge two clusters or split one in two."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from scan_core.explore.curation import split_in_two
from ui.gallery import data_uri, gallery, open_in_neighbours
from ui.state import cluster_options, cluster_title, curated, curation, require_results, through_navigation, who

PROTOTYPES = 12


def overview(results, state) -> None:
    thumbs = results.thumbnails()
    rows = []
    for row in results.cluster_table(state.clusters):
        top = results.members(state.clusters, row["cluster"])[:1]
        rows.append({"prototype": data_uri(thumbs[top[0]]) if len(top) else None,
                     "cluster": row["cluster"], "name": state.names.get(row["cluster"], ""),
                     "size": row["size"], "mean confidence": row["mean_confidence"],
                     "neighbour agreement": row.get("neighbour_agreement")})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", row_height=52, column_config={
        "prototype": st.column_config.ImageColumn("", width="small"),
        "mean confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f"),
        "neighbour agreement": st.column_config.ProgressColumn(
            min_value=0.0, max_value=1.0, format="%.2f",
            help="Share of the members' mined neighbours that lie in the same cluster")})


@st.dialog("Merge clusters")
def confirm_merge(results, state, source: int, target: int) -> None:
    st.write(f"Move all {int(state.cluster_sizes()[source]):,} images of **{cluster_title(state, source)}** "
             f"into **{cluster_title(state, target)}**? You can undo it on Curate & export.")
    if st.button("Merge", type="primary"):
        curation(results).merge(source, target, who())
        st.rerun()


def rename(results, state, cluster: int) -> None:
    with st.form(f"rename_{cluster}", border=False):
        left, right = st.columns([4, 1], vertical_alignment="bottom")
        name = left.text_input("Name", value=state.names.get(cluster, ""), placeholder="e.g. Sneaker",
                               key=f"name_{cluster}")
        if right.form_submit_button("Save name", icon=":material/label:") and name.strip():
            curation(results).name_cluster(cluster, name.strip(), who())
            st.toast(f"Cluster {cluster} is now “{name.strip()}”")
            st.rerun()


def main() -> None:
    results = require_results(("probs",))
    state = curated(results)
    st.title("Clusters")
    overview(results, state)
    clusters = cluster_options(state)
    cluster = st.selectbox("Cluster", clusters, format_func=lambda c: cluster_title(state, c), key="cluster")
    members = results.members(state.clusters, cluster)
    confidence = results.confidence
    st.header(cluster_title(state, cluster))
    cols = st.columns(3)
    cols[0].metric("Members", f"{len(members):,}")
    cols[1].metric("Mean confidence", f"{confidence[members].mean():.3f}" if len(members) else "–")
    agreement = results.neighbor_agreement(state.clusters)
    if agreement is not None and len(members):
        cols[2].metric("Neighbour agreement", f"{agreement[members].mean():.3f}")
    rename(results, state, cluster)

    caption = lambda i: f"{confidence[i]:.2f}"  # noqa: E731
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
        shown = gallery(results, members, f"members_{cluster}", caption)
        open_in_neighbours(results, shown, f"members_open_{cluster}")
    with tab_review:
        gallery(results, members[::-1], f"review_{cluster}", caption)

    st.subheader("Merge or split")
    left, right = st.columns(2)
    with left:
        others = [c for c in clusters if c != cluster]
        target = st.selectbox("Merge this cluster into", others, format_func=lambda c: cluster_title(state, c),
                              key=f"merge_target_{cluster}")
        if st.button("Merge…", icon=":material/merge:", disabled=not others):
            confirm_merge(results, state, cluster, target)
    with right:
        st.caption("Split runs k-means with 2 on this cluster's features; the second part becomes a new cluster.")
        if st.button("Split in two", icon=":material/call_split:", disabled=len(members) < 2):
            if results.features is None:
                st.error("This run has no features to split on.")
            else:
                moving = split_in_two(np.asarray(results.features), members)
                new = curation(results).split(cluster, moving, who())
                st.toast(f"Split: {len(moving):,} images moved to new cluster {new}")
                st.rerun()


through_navigation()
main()
