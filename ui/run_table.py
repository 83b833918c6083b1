"""The workspace's runs on the Data & training page: the runs table (ticking a row opens that run),
rename or delete a run (deleted runs go to the workspace's trash), and two finished runs compared.
"""
from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from scan_core.data.rundir import RunState
from scan_core.explore import jobs
from scan_core.explore.compare import compare_runs
from scan_core.explore.workspace import RUN_NAME_MAX, Workspace
from ui.curating import curation
from ui.keys import RUN_PICKER
from ui.runs import chosen_run, forget_run, open_run, results

RUNS_TABLE = "runs_table"
MANAGED_RUN, NEW_NAME = "managed_run", "new_run_name"  # Rename or delete a run: the run, its new name
MANAGED_FOR = "managed_for"  # the run on show when the managed run was last set to it
PENDING_DELETE = "pending_delete"      # the run whose delete waits for its confirmation
RUN_MESSAGE = "run_message"            # what the last rename or delete did


def runs_table(runs: list[jobs.ListedRun]) -> None:
    """Every run with its state and scores; ticking a row opens that run (:func:`open_selected_run`)."""
    if not runs:
        return
    st.subheader("Runs")
    table = pd.DataFrame([{"run": row.name, "state": row.state.value, "dataset": row.dataset,
                           "clusters": row.clusters, "preset": row.preset,
                           "acc": row.acc, "nmi": row.nmi, "created": row.created} for row in runs])
    table["created"] = pd.to_datetime(table["created"], unit="s").dt.strftime("%Y-%m-%d %H:%M")
    table[["acc", "nmi"]] = table[["acc", "nmi"]].astype(float)  # no score yet: NaN, drawn as the placeholder
    st.dataframe(table[["run", "state", "dataset", "clusters", "preset", "acc", "nmi", "created"]],
                 hide_index=True, width="stretch", on_select=functools.partial(open_selected_run, table["run"].tolist()),
                 selection_mode="single-row", key=RUNS_TABLE, placeholder="–",
                 column_config={"acc": st.column_config.NumberColumn(
                                 "ACC", format="%.3f", help="Accuracy against the labels (1.000: every image in its "
                                 "class's cluster); Evaluation sets it beside chance and k-means on the features"),
                                "nmi": st.column_config.NumberColumn("NMI", format="%.3f"),
                                "dataset": st.column_config.TextColumn("dataset", max_chars=40)})


def open_selected_run(names: list[str]) -> None:
    """The runs table's callback: open the run of the ticked row (``names``: the table's runs, in order)."""
    rows = st.session_state[RUNS_TABLE]["selection"]["rows"]
    if rows:
        open_run(names[rows[0]])


def manage_runs(ws: Workspace, runs: list[jobs.ListedRun]) -> None:
    """Rename or delete a run (deleted runs go to the workspace's trash), and compare two runs."""
    if RUN_MESSAGE in st.session_state:  # outside the expander, which a rerun may close
        st.info(st.session_state.pop(RUN_MESSAGE))
    if not runs:
        return
    names = [row.name for row in runs]
    shown = chosen_run()
    if shown is not None and shown.name in names and st.session_state.get(MANAGED_FOR) != shown.name:
        st.session_state[MANAGED_RUN] = st.session_state[MANAGED_FOR] = shown.name  # the run on show comes first
    with st.expander("Rename or delete a run", icon=":material/edit:"):
        cols = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
        chosen = cols[0].selectbox("Run", names, key=MANAGED_RUN)
        cols[1].text_input("New name", key=NEW_NAME, placeholder=chosen, max_chars=RUN_NAME_MAX)
        cols[2].button("Rename", icon=":material/edit:", on_click=rename_clicked, args=(ws, chosen), key="rename_run")
        cols[3].button("Delete…", icon=":material/delete:", key="delete_run",
                       on_click=lambda: st.session_state.update({PENDING_DELETE: chosen}))
        pending = st.session_state.get(PENDING_DELETE)
        if pending in names:
            st.warning(f"Delete **{pending}**? It leaves the runs list and moves to `{ws.trash}` "
                       "(move it back into `runs/` to restore it).")
            st.button(f"Confirm delete of {pending}", type="primary", on_click=delete_clicked, args=(ws, pending),
                      key="confirm_delete")
    compare_section(ws, runs)


def rename_clicked(ws: Workspace, name: str) -> None:
    """Rename's callback: the run keeps being shown under its new name."""
    try:
        renamed = jobs.rename_run(ws, ws.runs / name, st.session_state[NEW_NAME].strip() or name)
    except ValueError as error:
        st.session_state[RUN_MESSAGE] = f"Not renamed: {error}."
        return
    st.session_state[RUN_MESSAGE] = f"Renamed {name} to {renamed.name}."
    st.session_state[NEW_NAME] = ""
    st.session_state[MANAGED_RUN] = renamed.name
    if st.session_state.get(RUN_PICKER) == name:
        open_run(renamed.name)


def delete_clicked(ws: Workspace, name: str) -> None:
    """Confirm delete's callback."""
    st.session_state.pop(PENDING_DELETE, None)
    try:
        where = jobs.delete_run(ws, ws.runs / name)
    except ValueError as error:
        st.session_state[RUN_MESSAGE] = f"Not deleted: {error}."
        return
    st.session_state[RUN_MESSAGE] = f"Deleted {name} (moved to {where})."
    st.session_state.pop(MANAGED_RUN, None)
    if st.session_state.get(RUN_PICKER) == name:
        st.session_state.pop(RUN_PICKER, None)
        forget_run()


def compare_section(ws: Workspace, runs: list[jobs.ListedRun]) -> None:
    """Two finished runs side by side: settings and scores, and how far their clusters agree."""
    finished = [row.name for row in runs if row.state == RunState.FINISHED]
    if len(finished) < 2:
        return
    with st.expander("Compare two runs", icon=":material/compare_arrows:"):
        left, right = st.columns(2)
        first = left.selectbox("Run", finished, key="compare_a")
        second = right.selectbox("beside", [name for name in finished if name != first], key="compare_b")
        loaded = [results(ws.runs / name) for name in (first, second)]
        comparison = compare_runs(*loaded, *(curation(run).state().clusters for run in loaded))
        st.dataframe(pd.DataFrame(comparison.rows), hide_index=True, width="stretch", column_config={
            score: st.column_config.NumberColumn(format="%.3f") for score in ("ACC", "NMI", "ARI")})
        if comparison.agreement is None:
            st.caption("They clustered different images, so their clusters cannot be compared image by image.")
            return
        st.metric("Clusters agree (ARI, same images)", f"{comparison.agreement:.3f}",
                  help="The adjusted Rand index of the two runs' (curated) clusters: 1 the same grouping, 0 chance")
        table = pd.DataFrame(comparison.crosstab, index=[f"{first}: {c}" for c in range(len(comparison.crosstab))],
                             columns=[f"{second}: {c}" for c in range(comparison.crosstab.shape[1])])
        st.caption(f"Images per pair of clusters (rows: {first}, columns: {second})")
        st.dataframe(table, width="stretch")
