"""The evidence for a suggested number of clusters (:mod:`scan_core.explore.suggest`), drawn: for
every K tried, how stable k-means is on random halves (line) and the eigengap of the mined
neighbour graph (bars, coloured by whether the K was among the most stable, the candidates the
eigengap chooses from); the suggested K marked."""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from scan_core.data.artifacts import CorruptArtifact
from scan_core.data.rundir import SUGGESTION
from scan_core.explore.suggest import KSuggestion, run_suggestion

SUGGESTED, CANDIDATE, PASSED_OVER = "#E45756", "#9ECAE9", "#DDDDDD"  # the eigengap bars: chosen, stable, less stable


@st.cache_data(show_spinner="Suggesting K from the mined neighbours…", max_entries=8)
def cached_suggestion(run_dir: str, neighbors_mtime: float) -> dict:
    """:func:`run_suggestion` as a dict, kept while the run's neighbours stay the same."""
    return run_suggestion(Path(run_dir)).to_dict()


def suggestion_section(run_dir: Path, num_clusters: int) -> None:
    """An expander with the run's suggestion for K and its evidence: the one its suggest stage made
    (``--clusters auto``), else, on a click, one computed from its mined neighbours."""
    stored = (run_dir / SUGGESTION).exists()
    with st.expander(f"Why K = {num_clusters}?" if stored else "How many clusters would this run suggest?",
                     icon=":material/query_stats:"):
        if not stored and not st.button("Suggest K from this run's neighbours", key="suggest_k"):
            st.caption("Computed from the mined neighbours and the features the heads learn on (seconds).")
            return
        suggestion_of(run_dir)


def suggestion_of(run_dir: Path) -> KSuggestion | None:
    """The run's suggestion drawn with its evidence (None, with a warning, when it has none)."""
    try:
        suggestion = KSuggestion.from_dict(cached_suggestion(str(run_dir), (run_dir / "neighbors.npy").stat().st_mtime))
    except (FileNotFoundError, CorruptArtifact, ValueError) as error:
        st.warning(f"No suggestion: {error}")
        return None
    evidence_chart(suggestion, f"suggest_chart_{run_dir.name}")
    return suggestion


def evidence_chart(suggestion: KSuggestion, key: str) -> None:
    """Stability and eigengap against K, and one line saying why the suggestion."""
    figure = go.Figure()
    figure.add_bar(x=suggestion.ks, y=suggestion.eigengaps, name="eigengap after K", yaxis="y2",
                   marker_color=[SUGGESTED if k == suggestion.k else CANDIDATE if stable else PASSED_OVER
                                 for k, stable in zip(suggestion.ks, suggestion.stable)])
    figure.add_scatter(x=suggestion.ks, y=suggestion.stability, name="stability (ARI of two halves)",
                       mode="lines+markers", line_color="#4C78A8")
    figure.add_vline(x=suggestion.k, line_dash="dot", line_color="#E45756")
    figure.update_layout(height=300, margin={"l": 0, "r": 0, "t": 10, "b": 0}, legend={"orientation": "h", "y": -0.25},
                         xaxis={"title": "K", "dtick": 1}, yaxis={"title": "stability", "range": [0, 1.05]},
                         yaxis2={"title": "eigengap", "overlaying": "y", "side": "right", "showgrid": False})
    st.plotly_chart(figure, key=key, config={"displayModeBar": False})  # its toolbar would cover the top axis
    st.caption(f"Suggested {suggestion.reason()}. Bars: the suggested K in red, the other most stable K in blue, "
               "the less stable K in light grey. Stability favours coarse groups and the eigengap fine ones; "
               "neither knows what you call a class, so treat it as a starting point: merge and split on Clusters.")
