"""Review: the images most likely to be in the wrong cluster, across all clusters, most doubtful
first (:mod:`scan_core.explore.review`), each with the reason it is there. Click one for its detail
view (A accepts it where it is, a number key moves it, both go on to the next); or accept a whole
page. Reviewed images leave the queue; every action is a curation edit (history, undo). Then
refine: the model trained again from the images labelled one by one (:mod:`scan_core.explore.refine`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from scan_core.explore import estimates, jobs
from scan_core.explore.refine import image_labels
from scan_core.explore.results import RunResults
from scan_core.explore.review import near_duplicates, neighbour_similarity, outliers, teaching_picks
from ui.curating import cluster_title, curated, curation, edit, review, who
from ui.detail import detail_view
from ui.gallery import gallery
from ui.navigation import through_navigation
from ui.runs import calibration, require_results, workspace
from ui.text import duration_text

PAGE_SIZE = 48
VIEWS = ("most doubtful", "to teach a refine", "near-duplicates", "outliers")
DUPLICATE_SIMILARITY = 0.98  # cosine of the features: a near-duplicate pair
OUTLIERS = 200


def main() -> None:
    results = require_results(("probs", "neighbors"))
    state = curated(results)
    detail_view(results, "review")
    st.title("Review")
    queue = review(results, state)
    left, right = st.columns(2)
    left.metric("Left to review", f"{len(queue.order):,}")
    right.metric("Reviewed", f"{len(state.reviewed):,}")
    order = st.segmented_control("Show", VIEWS, default=VIEWS[0], key="review_order",
                                 help="most doubtful: to find the model's mistakes; to teach a refine: one image for "
                                      "each group of similar ones, whose labels spread best; near-duplicates: pairs "
                                      "of images almost alike; outliers: images unlike even their nearest neighbours")
    if order in ("near-duplicates", "outliers"):
        neighbour_view(results, state, order)
        shown = np.zeros(0, dtype=np.int64)  # edited one by one (detail view), not accepted by the page
    elif order == "to teach a refine":
        picks = teaching_order(results, state)
        st.caption(f"{len(picks):,} images that stand for all the others (one per group of similar images, biggest "
                   "groups first): accept or move them, then **Refine with my labels** below. Click an image for "
                   "its detail view; **A** accepts it, a **number key** moves it.")
        shown = gallery(results, picks, "teach", lambda i: cluster_title(state, int(state.clusters[i])),
                        page_size=PAGE_SIZE, empty="Nothing left to label.")
    else:
        st.caption("Most doubtful first: its nearest images (the mined neighbours, and the nearest in the "
                   "features) mostly belong to other clusters. Under each image: its cluster, and the share of "
                   "its neighbours' votes for that cluster (*neighbours agree*). Click an image to see it with its "
                   "neighbours; **A** accepts it, a **number key** moves it to that cluster.")
        shown = gallery(results, queue.order, "review", lambda i: short_reason(state, queue, i), page_size=PAGE_SIZE,
                        empty="Nothing left to review.")
    if len(shown) and st.button(f"Accept these {len(shown)} where they are", icon=":material/done_all:",
                                help="Every image of this page stays in its cluster, reviewed"):
        edit(lambda: curation(results).accept(shown, state.clusters[shown], who()),
             f"{len(shown)} images accepted")
    refine_section(results, state)


def refine_section(results, state) -> None:
    """Refine with my labels: train the run again from the images labelled one by one."""
    st.subheader("Refine with my labels")
    labels = image_labels(state)
    done = results.metrics.get("refine")
    seconds = estimates.refine_seconds(results.dir, calibration(workspace()))
    st.caption(f"**{len(labels.images):,} images** are labelled one by one (moved, accepted, or given a cluster's "
               "name). Refine trains the model again from them, keeping every other image with its mined "
               "neighbours, so each label moves similar images with it; your labels stay as you gave them. "
               "It runs in the background like a training"
               + (f" (about {duration_text(seconds)})." if seconds is not None else ".")
               + (f" Left out: {'; '.join(f'{n} {why}' for why, n in labels.left_out.items())}." if labels.left_out else ""))
    if done:
        scores = f", ACC {done['acc']:.3f} (before: {results.metrics[done['from']]['acc']:.3f})" if "acc" in done else ""
        st.caption(f"Last refine: {done['labels']:,} labels, {done['changed']:,} images changed cluster{scores}. "
                   "Evaluation shows the clusters before and after it side by side.")
        if results.final_stage == "refine" and st.button("Undo the refine", icon=":material/undo:", key="refine_undo",
                                                         help="Go back to the clusters before it; your edits stay"):
            try:
                stage = jobs.undo_refine(workspace(), results.dir)
            except (jobs.JobBusy, ValueError) as error:
                st.warning(f"Not undone: {error}")
            else:
                st.toast(f"Refine undone: the {stage} clusters are the result again")
                st.rerun()
    if st.button("Refine with my labels", icon=":material/model_training:", disabled=not len(labels.images),
                 key="refine_start"):
        try:
            jobs.refine(workspace(), results.dir)
        except (jobs.JobBusy, ValueError) as error:
            st.warning(f"Not started: {error}")
        else:
            st.success("Refining: follow it on Data & training; every page shows the refined clusters when it ends.")


def neighbour_view(results, state, view: str) -> None:
    """Near-duplicate pairs (each image beside its twin) or the most isolated images, from the
    features of the mined neighbours; images flagged as outliers leave both lists."""
    if results.features is None:
        st.info("This run has no features to compare images with.")
        return
    similarity = cached_similarity(str(results.dir), (results.dir / "neighbors.npy").stat().st_mtime)
    flagged = np.fromiter(state.outliers, dtype=np.int64)
    if view == "near-duplicates":
        pairs = near_duplicates(similarity, np.asarray(results.neighbors), DUPLICATE_SIMILARITY)
        pairs = pairs[~np.isin(pairs, flagged).any(1)]
        st.caption(f"{len(pairs):,} pairs of images whose features are at least {DUPLICATE_SIMILARITY} alike "
                   "(cosine), most alike first, each image beside its twin. Flag the copies as outliers (detail "
                   "view) to leave them out of the exports' training sets.")
        twin = {int(a): int(b) for a, b in pairs} | {int(b): int(a) for a, b in pairs}
        gallery(results, pairs.ravel(), "duplicates",
                lambda i: f"{cluster_title(state, int(state.clusters[i]))}\n≈ #{twin[i]}", page_size=PAGE_SIZE,
                empty="No near-duplicates.")
    else:
        isolated = outliers(similarity, OUTLIERS + len(flagged))
        isolated = isolated[~np.isin(isolated, flagged)][:OUTLIERS]
        alike = similarity.mean(1)
        left_out = f" ({len(flagged):,} flagged as outliers left out)" if len(flagged) else ""
        st.caption(f"The {len(isolated):,} most isolated of the run's {len(similarity):,} images{left_out}: those least "
                   "like even their nearest mined neighbours, most isolated first (mean cosine of the features to "
                   "them): odd images, mistakes in the folder, or a class of their own. Flag them as outliers in the "
                   "detail view.")
        gallery(results, isolated, "isolated", lambda i: f"{cluster_title(state, int(state.clusters[i]))}\n"
                f"alike {alike[i]:.2f}", page_size=PAGE_SIZE, empty="No images.")


@st.cache_data(show_spinner="Comparing each image with its neighbours…", max_entries=4)
def cached_similarity(run_dir: str, mtime: float) -> np.ndarray:
    loaded = RunResults.load(Path(run_dir))
    return neighbour_similarity(loaded.features, np.asarray(loaded.neighbors))


def teaching_order(results, state) -> np.ndarray:
    """One image per group of similar ones (1% of the run, 20 to 1,000; the same list while the run
    stays the same), those reviewed or flagged since left out."""
    count = min(1000, max(20, len(state.clusters) // 100))
    picks = cached_picks(str(results.dir), count, (results.dir / "neighbors.npy").stat().st_mtime)
    return picks[~np.isin(picks, np.fromiter(state.reviewed | state.outliers, dtype=np.int64))]


@st.cache_data(show_spinner="Finding the images that stand for the others…", max_entries=4)
def cached_picks(run_dir: str, count: int, mtime: float) -> np.ndarray:
    return teaching_picks(RunResults.load(Path(run_dir)).head_points(), count)


def short_reason(state, queue, index: int) -> str:
    """Its cluster, then the share of its neighbours' votes for that cluster (both neighbourhoods' mean)."""
    return f"{cluster_title(state, int(state.clusters[index]))}\nneighbours agree: {queue.agreement(index):.0%}"


through_navigation()
main()
