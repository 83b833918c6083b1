"""Evaluation (runs with labels): Hungarian ACC, NMI, ARI, confusion matrix, per-class precision
and recall, the stages side by side, and the confidence histogram."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from scan_core.data.rundir import CLUSTER_STAGES, STAGES
from ui.curating import cluster_title, curated
from ui.detail import detail_view
from ui.gallery import gallery
from ui.listeners import plot_component
from ui.navigation import through_navigation
from ui.runs import require_results
from ui.text import html_text

SCORED_STAGES = [stage for stage in STAGES if stage.name in ("pretext", "manifold", *CLUSTER_STAGES)]
CELL_CLUSTER, CELL_CLASS = "cell_cluster", "cell_class"  # the confusion cell shown: its boxes

_cell_clicks = plot_component("scan_confusion_clicks", "confusion_clicks")


def cell_images(results, title, clusters: np.ndarray, rows: list[int]) -> None:
    """The images of one confusion-matrix cell (cluster x true class): the cell clicked on the
    heatmap (drawn with ``rows`` top to bottom), or picked in two boxes."""
    clicked = _cell_clicks(key="confusion_clicks", on_clicked_change=lambda: None).clicked
    if isinstance(clicked, dict):  # what the browser sends is input: whole indices inside the matrix
        row, column = clicked.get("row"), clicked.get("column")
        if isinstance(row, int) and isinstance(column, int) and 0 <= row < len(rows) \
                and 0 <= column < len(results.class_names):
            st.session_state[CELL_CLUSTER], st.session_state[CELL_CLASS] = rows[row], column
    left, right = st.columns(2)
    cluster = left.selectbox("Cell: cluster", rows, format_func=title, key=CELL_CLUSTER)
    label = right.selectbox("Cell: true class", range(len(results.class_names)),
                            format_func=lambda k: results.class_names[k], key=CELL_CLASS)
    images = np.flatnonzero((clusters == cluster) & (results.images.labels == label))
    confidence = results.confidence
    gallery(results, images[np.argsort(-confidence[images], kind="stable")], f"cell_{cluster}_{label}",
            lambda i: f"{confidence[i]:.2f}", empty="No image of this class in this cluster.")


def acc_context(results, report: dict) -> str:
    """How good the ACC is, in plain words: against chance (every image called the largest class)
    and, when the run recorded it, against k-means on its features."""
    pretext = results.metrics.stage("pretext")
    kmeans = (f"; k-means on the run's features alone scores **{pretext['acc']:.3f}**"
              if "acc" in pretext and pretext.get("method", "").startswith("k-means") else "")
    return (f"For scale: 1.000 is every image in its class's cluster; calling every image the largest class "
            f"(chance) scores **{report['chance_acc']:.3f}**{kmeans}.")


def main() -> None:
    results = require_results(("probs", "labels"))
    state = curated(results)
    detail_view(results, "evaluation")
    st.title("Evaluation")
    which = st.segmented_control("Clusters", ["model", "curated"], default="model", key="eval_which",
                                 help="model: the run's own assignment; curated: the curated labels, after names, "
                                      "merges, splits, moves and per-image labels")
    if which == "curated":  # every curated label is a group, images relabelled one by one included
        clusters, names = pd.factorize(state.labels(), sort=True)
        title = lambda c: str(names[c])
    else:
        clusters, title = results.clusters, lambda c: cluster_title(state, c)
    report = results.evaluation(clusters)
    k, classes = len(report["clusters"]), len(results.class_names)
    cols = st.columns(4)
    cols[0].metric("ACC (Hungarian)", f"{report['acc']:.3f}")
    cols[1].metric("NMI", f"{report['nmi']:.3f}")
    cols[2].metric("ARI", f"{report['ari']:.3f}")
    cols[3].metric("Majority-vote ACC", f"{report['majority_acc']:.3f}",
                   help="Each cluster takes its most frequent class: the fair score when K ≠ classes")
    st.caption(acc_context(results, report))
    if k != classes:
        st.info(f"{k} non-empty clusters for {classes} classes: Hungarian ACC leaves clusters unmatched, "
                "so read the majority-vote ACC; the confusion matrix uses the majority-vote map.")

    st.subheader("Confusion matrix")
    mapping = report["mapping"]
    rows = [f"{title(c)} → {results.class_names[mapping[int(c)]]}" if int(c) in mapping
            else title(c) for c in report["clusters"]]
    order = np.argsort([mapping.get(int(c), classes) for c in report["clusters"]], kind="stable")
    figure = px.imshow(report["confusion"][order], x=[html_text(name) for name in results.class_names],
                       y=[html_text(rows[i]) for i in order],
                       color_continuous_scale="Blues", text_auto=True, aspect="auto",
                       labels={"x": "true class", "y": "cluster → mapped class", "color": "images"})
    figure.update_layout(height=max(360, 34 * k), margin={"l": 0, "r": 0, "t": 30, "b": 0})
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    st.plotly_chart(figure, key="confusion")
    st.caption(f"Clusters are mapped to classes by {report['mapping_kind']}. Click a cell (or pick it below) to see its images.")
    cell_images(results, title, clusters, [int(report["clusters"][i]) for i in order])

    left, right = st.columns(2)
    with left:
        st.subheader("Per class")
        st.dataframe(pd.DataFrame(report["per_class"]), hide_index=True, width="stretch", column_config={
            c: st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.3f")
            for c in ("precision", "recall")})
    with right:
        st.subheader("Stages side by side")
        stages = [{"stage": s.title, **{m: results.metrics[s.name].get(m) for m in ("acc", "nmi", "ari")},
                   "seconds": results.metrics[s.name].get("seconds")} for s in SCORED_STAGES if s.name in results.metrics]
        st.dataframe(pd.DataFrame(stages), hide_index=True, width="stretch")
        if results.metrics.final:
            st.caption(f"The run's result: {results.metrics.final.stage} ({results.metrics.final.why}).")
            if results.metrics.chosen_partition():
                st.caption(f"SCAN's stage chose {results.metrics.chosen_partition()}.")
        neighbours = results.metrics.stage("neighbors")
        if "purity" in neighbours:
            st.caption(f"Neighbour purity (top-{neighbours['k']}, {neighbours['space']} space): "
                       f"{neighbours['purity']:.3f}")

    st.subheader("Confidence")
    correct = report["predicted"] == results.images.labels
    frame = pd.DataFrame({"confidence": results.confidence,
                          "matches its class": np.where(correct, "yes", "no")})
    histogram = px.histogram(frame, x="confidence", color="matches its class", nbins=40, barmode="stack",
                             color_discrete_map={"yes": "#54A24B", "no": "#E45756"})
    histogram.update_layout(height=300, margin={"l": 0, "r": 0, "t": 10, "b": 0})
    st.plotly_chart(histogram, key="confidence_hist")


through_navigation()
main()
