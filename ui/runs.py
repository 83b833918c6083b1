"""The workspace and the run on show: chosen in the sidebar, kept in ``st.query_params`` so a refresh
keeps it; its artifacts read once and cached by their mtimes.

Pages call :func:`require_results` at the top and draw; nothing here trains or recomputes a stage.
The workspace's runs are listed once per script run, by the sidebar (:func:`listed_runs`).
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from scan_core.data.run_metrics import METRICS_FILE
from scan_core.data.rundir import RunState
from scan_core.explore import jobs
from scan_core.explore.estimates import HISTORY, Calibration
from scan_core.explore.jobs import ListedRun, job_state
from scan_core.explore.results import RunNotReady, RunResults
from scan_core.explore.workspace import Workspace, run_name
from ui.artifacts import signature
from ui.curating import who_box
from ui.keys import LISTED_RUNS, RUN_PARAM, RUN_PICKER, UNKNOWN_RUN
from ui.navigation import page_link
from ui.text import markdown_text

WATCH_SECONDS = 2.0


def workspace() -> Workspace:
    """The workspace ``$SCAN_EXPLORER_HOME`` names (read each rerun: cheap, and tests switch it)."""
    return Workspace.from_env()


@st.cache_resource(max_entries=4, show_spinner="Reading the run…")
def _load_results(run_dir: str, signature: tuple) -> RunResults:
    return RunResults.load(Path(run_dir))


def results(run_dir: Path) -> RunResults:
    return _load_results(str(run_dir), signature(run_dir))


def calibration(ws: Workspace) -> Calibration:
    """The stage factors of the workspace's latest finished runs (:meth:`~scan_core.explore.estimates.
    Calibration.of_runs`), measured again only when one of their metrics changes: the progress card
    asks for them every few seconds."""
    finished = jobs.finished_runs(ws, listed_runs())[:HISTORY]
    return _calibration(tuple((str(run), (run / METRICS_FILE).stat().st_mtime_ns) for run in finished
                              if (run / METRICS_FILE).exists()))


@st.cache_resource(max_entries=4, show_spinner=False)
def _calibration(runs: tuple[tuple[str, int], ...]) -> Calibration:
    return Calibration.of_runs([Path(run) for run, _ in runs])


def chosen_run() -> Path | None:
    """The run named in the URL (or remembered by this session), if it still exists. A name that
    is no run of the workspace (mistyped, too long, with odd characters) is remembered in
    :data:`~ui.keys.UNKNOWN_RUN` for the sidebar to say so, and None is returned."""
    name = st.query_params.get(RUN_PARAM) or st.session_state.get(RUN_PARAM)
    if not name:
        return None
    run_dir = workspace().runs / run_name(name)
    if run_name(name) != name or not run_dir.is_dir():
        st.session_state[UNKNOWN_RUN] = name
        st.session_state.pop(RUN_PARAM, None)
        return None
    st.session_state[RUN_PARAM] = run_dir.name
    if st.query_params.get(RUN_PARAM) != run_dir.name:
        st.query_params[RUN_PARAM] = run_dir.name  # page switches drop query params: put it back
    return run_dir


def choose_run(name: str) -> None:
    st.session_state[RUN_PARAM] = name
    st.query_params[RUN_PARAM] = name


def open_run(name: str) -> None:
    """Show run ``name`` on every page: the URL's ``?run=`` and the sidebar's run picker (a
    callback's job: a widget's value may be set before the widget is drawn, not after)."""
    choose_run(name)
    st.session_state[RUN_PICKER] = name


def forget_run() -> None:
    """Show no run in particular (the one shown was deleted): the sidebar picks the newest."""
    st.session_state.pop(RUN_PARAM, None)
    if RUN_PARAM in st.query_params:
        del st.query_params[RUN_PARAM]


def listed_runs() -> list[ListedRun]:
    """The workspace's runs (:func:`scan_core.explore.jobs.list_runs`) as the sidebar listed them at
    the start of this script run; a fragment's run reuses those of the last whole run (a change of
    a run's state reruns the whole app: :func:`watch_runs`)."""
    if LISTED_RUNS not in st.session_state:
        return list_runs_now()
    return st.session_state[LISTED_RUNS]


def list_runs_now() -> list[ListedRun]:
    """List the workspace's runs again, for the rest of this script run (:func:`listed_runs`)."""
    runs = st.session_state[LISTED_RUNS] = jobs.list_runs(workspace())
    return runs


def sidebar() -> None:
    """Run switcher and the curator's name, on every page; lists the workspace's runs for the script run."""
    runs = list_runs_now()
    current = chosen_run()
    if current is None and runs:
        finished = [r.name for r in runs if r.state == RunState.FINISHED]
        choose_run(finished[0] if finished else runs[0].name)
        current = chosen_run()
    unknown = st.session_state.get(UNKNOWN_RUN)  # said until the user picks a run
    if unknown is not None:
        shown = unknown if len(unknown) <= 60 else unknown[:60] + "…"
        st.warning(f"There is no run named “{markdown_text(shown)}” in this workspace"
                   + (f"; showing **{current.name}** instead." if current else "."), icon=":material/warning:")
    with st.sidebar:
        if runs:
            names = [r.name for r in runs]
            index = names.index(current.name) if current and current.name in names else 0
            # the state goes beside the picker, not into its labels: a selectbox keeps showing the
            # label its value had when first drawn, so "running" would stay after the run ended
            picked = st.selectbox("Run", names, index=index, key=RUN_PICKER)
            if current is None or picked != current.name:
                choose_run(picked)
                st.session_state.pop(UNKNOWN_RUN, None)
            state = next(r.state for r in runs if r.name == picked)
            st.caption(f"{markdown_text(picked)} · {state}")
            for other in (r for r in runs if r.state.working and r.name != picked):  # one may train meanwhile
                st.caption(f":material/model_training: {markdown_text(other.name)} · {other.state}"
                           + (f" ({other.status.stage})" if other.status.stage else ""))
            working = {r.name: r.state for r in runs if r.state.working}
            if working:
                watch_runs(working)
        who_box()


@st.fragment(run_every=WATCH_SECONDS)
def watch_runs(drawn: dict[str, RunState]) -> None:
    """While a run trains, every :data:`WATCH_SECONDS`: rerun the whole app when a run that was
    training when the page was drawn (``drawn``: run -> state) is in another state, so that the
    sidebar, the progress card and a page waiting for a stage never show a state that has passed.
    Only those runs are read: no other can change state meanwhile (one training at a time, and a
    run that does not train starts only from a page, which reruns the app)."""
    ws = workspace()
    if any(job_state(ws, ws.runs / name).state != state for name, state in drawn.items()):
        st.rerun(scope="app")


def require_results(need: tuple[str, ...] = ("probs",)) -> RunResults:
    """The chosen run's results, or a plain message (no run, still running, missing artifact)
    and ``st.stop()``. ``need`` names what the page cannot do without: ``probs``,
    ``projection``, ``neighbors``, ``features``, ``labels``."""
    run_dir = chosen_run()
    if run_dir is None:
        st.info("No run yet. Start one on **Data & training** — the digits demo takes about a minute.")
        page_link("Data & training", label="Go to Data & training")
        st.stop()
    state = job_state(workspace(), run_dir)
    try:
        loaded = results(run_dir)
        missing = [what for what in need if not _has(loaded, what)]
    except RunNotReady:
        loaded, missing = None, list(need)
    if missing:
        if state.state.working:
            st.info(f"**{run_dir.name}** is still training (stage: {state.stage or 'starting'}). "
                    "This page fills in when the stage it needs has finished.")
        elif "labels" in missing:
            st.info(f"**{run_dir.name}** has no labels (its images came without label folders), "
                    "so there is nothing to score against. Curate it on **Curate & export**.")
        else:
            st.warning(f"**{run_dir.name}** ({state.state}) lacks: {', '.join(missing)}. "
                       + (f"Reason: {state.error}. " if state.error else "")
                       + "Resume it on **Data & training**.")
        st.stop()
    return loaded


def _has(loaded: RunResults, what: str) -> bool:
    if what == "probs":
        return loaded.final_stage is not None
    if what == "labels":
        return loaded.images.has_labels
    return getattr(loaded, what) is not None
