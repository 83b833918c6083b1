"""The evidence for a suggested number of clusters (:mod:`scan_core.explore.suggest`), drawn: for
every K tried, how clearly the images separate into K groups on a map of their features (bars), the
suggested K and the next best marked, and one caption in plain words; an earlier version's
suggestion, whose evidence is not kept, with a button to suggest again."""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from scan_core.data.artifacts import CorruptArtifact
from scan_core.data.rundir import SUGGESTION
from scan_core.explore.suggest import KSuggestion, run_suggestion

SUGGESTED, RUNNER_UP, OTHER = "#E45756", "#F58518", "#9ECAE9"  # the bars: the suggested K, the next best, the rest
SEPARATION = "separation of the K groups"                     # the bars' name


@st.cache_data(show_spinner="Suggesting K from the run's features…", max_entries=8)
def cached_suggestion(run_dir: str, features_mtime: float, again: bool = False) -> dict:
    """:func:`run_suggestion` as a dict, kept while the run's features stay the same."""
    return run_suggestion(Path(run_dir), again).to_dict()


def suggestion_section(run_dir: Path, num_clusters: int) -> None:
    """An expander with the run's suggestion for K and its evidence: the one its suggest stage made
    (``--clusters auto``), else, on a click, one computed from its features."""
    stored = (run_dir / SUGGESTION).exists()
    with st.expander(f"Why K = {num_clusters}?" if stored else "How many clusters would this run suggest?",
                     icon=":material/query_stats:"):
        if not stored and not st.button("Suggest K from this run's features", key="suggest_k"):
            st.caption("Computed from the features the heads learn on, mapped by UMAP (seconds to a minute).")
            return
        suggestion_of(run_dir)


def suggestion_of(run_dir: Path) -> KSuggestion | None:
    """The run's suggestion drawn with its evidence (None, with a warning, when it has none); one an
    earlier version stored is shown with a button that suggests again (then that one is returned)."""
    try:
        mtime = (run_dir / "features.npy").stat().st_mtime
        suggestion = KSuggestion.from_dict(cached_suggestion(str(run_dir), mtime))
        again = f"suggest_again:{run_dir}"
        if suggestion.earlier and not st.session_state.get(again):
            st.caption(f"Suggested {suggestion.reason()}.")
            st.button("Suggest again", key=f"suggest_again_{run_dir.name}", on_click=st.session_state.__setitem__,
                      args=(again, True))
            return suggestion
        if suggestion.earlier:
            suggestion = KSuggestion.from_dict(cached_suggestion(str(run_dir), mtime, again=True))
    except (FileNotFoundError, CorruptArtifact, ValueError) as error:
        st.warning(f"No suggestion: {error}")
        return None
    evidence_chart(suggestion, f"suggest_chart_{run_dir.name}")
    return suggestion


def evidence_chart(suggestion: KSuggestion, key: str) -> None:
    """The separation against K, the suggested and the next best K marked, and one caption saying why."""
    if suggestion.separation is None:
        raise ValueError("an earlier version's suggestion has no separation to draw")
    figure = go.Figure()
    figure.add_bar(x=suggestion.ks, y=suggestion.separation, name=SEPARATION,
                   marker_color=[SUGGESTED if k == suggestion.k else RUNNER_UP if k == suggestion.runner_up else OTHER
                                 for k in suggestion.ks])
    figure.update_layout(height=300, margin={"l": 0, "r": 0, "t": 10, "b": 0}, showlegend=False,
                         xaxis={"title": "K (number of groups)", "dtick": 1},
                         yaxis={"title": "separation (0 none, 1 perfect)", "range": [min(0.0, suggestion.separation.min()), 1]})
    st.plotly_chart(figure, key=key, config={"displayModeBar": False})  # its toolbar would cover the top axis
    st.caption(f"Suggested {suggestion.reason()}. Bars: how clearly the images fall into K groups; the suggested K "
               "in red, the next best in orange. It does not know what you call a class, so treat it as a starting "
               "point: merge and split on Clusters.")
