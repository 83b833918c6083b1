"""The progress card of the run on show (Data & training): its stages, the current stage's bar and
ETA, the whole run's, the loss curve, how it ended and what to do next (Cancel, Resume, the pages
that show a finished run). A fragment polls that one run's files every 1.5 s.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from scan_core.data.run_metrics import RunMetrics
from scan_core.data.rundir import STAGE_NAMES, RunState, planned_stages, read_events
from scan_core.explore import estimates, jobs
from scan_core.explore.workspace import Workspace
from ui.keys import NAME_USED, RUN_PARAM, SCROLL_TO_PROGRESS
from ui.listeners import component
from ui.navigation import page_link
from ui.runs import calibration
from ui.text import duration_text

PROGRESS_CARD = "progress_card"          # the card's container key (its CSS class st-key-progress_card)
SCROLL_SECONDS = 30.0  # however slow the first script runs after Start are
PENDING_ICON = ":gray[:material/radio_button_unchecked:]"
NEXT_PAGES = ("Embedding", "Clusters", "Evaluation", "Curate & export")  # linked from a finished run
STATE_ICONS = {RunState.FINISHED: ":green[:material/check_circle:]", RunState.RUNNING: ":blue[:material/progress_activity:]",
               RunState.STARTING: ":blue[:material/progress_activity:]", RunState.FAILED: ":red[:material/error:]",
               RunState.INTERRUPTED: ":orange[:material/warning:]", RunState.CANCELLED: ":gray[:material/stop_circle:]"}
#: How a stopped run's reason (``{error}``) is shown: the user's own cancel is no error.
RESUMES = ("**Resume** keeps every finished stage and training epoch; a pass that was under way (the feature "
           "banks, a stage without epochs) starts again.")
OUTCOMES = {RunState.CANCELLED: (st.info, f"Cancelled by user. {RESUMES}"),
            RunState.INTERRUPTED: (st.warning, f"Interrupted: {{error}}. {RESUMES}"),
            RunState.FAILED: (st.error, "Failed: {error}")}


@st.fragment(run_every=1.5)
def live_progress(ws: Workspace, run_dir: Path) -> None:
    """Polls the run's status and events from disk every 1.5 s; never blocks on the job."""
    with st.container(border=True, key=PROGRESS_CARD):
        progress_card(ws, run_dir)


_scroll = component("scan_scroll_into_view", "scroll_into_view")


def scroll_to_progress() -> None:
    """After Start (the page scrolled down to its button): the new run's progress card, at the top of
    the page, scrolled into view once. The scroller is drawn by every script run of the first
    :data:`SCROLL_SECONDS` (the run's first change of state reruns the page, maybe before the browser
    mounted it); the browser mounts it once, and scrolls then."""
    started = st.session_state.get(SCROLL_TO_PROGRESS)
    if started is None:
        return
    if time.time() - started[1] > SCROLL_SECONDS:
        del st.session_state[SCROLL_TO_PROGRESS]
        return
    _scroll(key=f"scroll_{started[0]}_{started[1]}", data={"target": PROGRESS_CARD})


def progress_card(ws: Workspace, run_dir: Path) -> None:
    """Stages, the current stage's progress and ETA, the whole run's, its loss curve, Cancel / Resume."""
    state = jobs.job_state(ws, run_dir)
    events = read_events(run_dir)
    completed = set(state.completed)
    current = state.stage
    working = state.state.working
    st.subheader(f"{STATE_ICONS.get(state.state, '')} {run_dir.name} — {state.state}")
    config = jobs.run_config(run_dir)
    if config is not None and config.world_size > 1:
        st.caption(f":material/lan: {config.world_size} processes train this run together (torchrun); "
                   "rank 0 writes its files.")
    stages = [stage.name for stage in planned_stages(config.settings.to_dict(), run_dir)] if config else list(STAGE_NAMES)
    cols = st.columns(len(stages))
    for col, stage in zip(cols, stages):
        mark = (STATE_ICONS[RunState.FINISHED] if stage in completed else
                STATE_ICONS[RunState.RUNNING] if stage == current and working else PENDING_ICON)
        col.markdown(f"{mark} **{stage}**")
    steps = [e for e in estimates.stage_events(events, current) if e.get("kind") == "step"]
    if working:
        stage_bar(current, steps)
        left = estimates.remaining(run_dir, state, events, calibration(ws))
        if left is not None:
            st.caption(f":material/schedule: {current} is taking longer than estimated; the stages after it: about "
                       f"**{duration_text(left.seconds)}**." if left.overdue else
                       f":material/schedule: Whole run: about **{duration_text(left.seconds)}** left (each stage "
                       "from the image count, its epochs and how fast it went in finished runs, and the current "
                       "one from its progress).")
    losses = [(e["step"], e["loss"]) for e in steps if e.get("loss") is not None]
    if losses:
        st.line_chart(pd.DataFrame(losses, columns=["step", "loss"]).set_index("step"), height=180,
                      x_label=f"{current} training step", y_label="loss")
    if state.state == RunState.FINISHED:
        summary = finished_summary(run_dir)
        if summary:
            st.markdown(summary)
        final = RunMetrics.load(run_dir).final
        if final and final.warning:
            st.warning(final.warning, icon=":material/warning:")
        links = st.columns(4)
        for col, title in zip(links, NEXT_PAGES):
            page_link(title, container=col, query_params={RUN_PARAM: run_dir.name})
    resumable = jobs.resumable(run_dir, state.state)
    if state.error and state.state in OUTCOMES:
        show, message = OUTCOMES[state.state]
        show(message.format(error=state.error) if resumable else
             f"Not started: {state.error}. Nothing was trained: change the settings under **New run** and start again.")
    buttons = st.columns([1, 1, 4])
    if working:
        if buttons[0].button("Cancel", icon=":material/stop:", key="cancel"):
            jobs.cancel(ws, run_dir)
            st.toast("Cancelling… the job stops after its current step.")
    elif state.state in OUTCOMES and resumable and buttons[0].button(
            "Resume", icon=":material/replay:", key="resume", type="primary"):
        try:
            jobs.resume(ws, run_dir)
        except (jobs.JobBusy, ValueError) as error:
            st.warning(str(error))
        else:
            st.rerun(scope="app")


def stage_bar(stage: str | None, steps: list[dict]) -> None:
    """The current stage's bar: the steps of its current part and their ETA, or seconds against an
    estimate (unit ``s``)."""
    if not steps:
        st.progress(0.0, text=f"{stage or 'starting'}: preparing…")
        return
    last = steps[-1]
    name = f"{stage} · {last['part']}" if last.get("part") else stage
    if last.get("unit") == "s":
        text = (f"{name}: {last['step']} s (estimated {last['total']} s)" if last["step"] <= last["total"] else
                f"{name}: {last['step']} s, longer than the estimated {last['total']} s")
    else:
        unit = last.get("unit", "step")
        eta = last.get("eta_s")
        text = f"{name}: {unit} {last['step']:,} / {last['total']:,}" + (f" · ETA {eta:.0f} s" if eta is not None else "")
    st.progress(min(1.0, last["step"] / max(1, last["total"])), text=text)


def finished_summary(run_dir: Path) -> str:
    """One line of the final stage's scores and the run's total time, from ``metrics.json``."""
    metrics = RunMetrics.load(run_dir)
    final = jobs.final_scores(metrics)
    seconds = sum(m.get("seconds", 0) for m in metrics.values() if isinstance(m, dict))
    scores = " · ".join(f"{name} **{score:.3f}**"
                        for score, name in ((final.acc, "ACC"), (final.nmi, "NMI"), (final.ari, "ARI")) if score is not None)
    config = jobs.run_config(run_dir)
    k = (f"K = **{config.settings.num_clusters}**, suggested from the run's features (Clusters: *Why K?*) · "
         if config is not None and config.settings.suggest_clusters else "")
    return (f"{k}{scores + ' · ' if scores else ''}{metrics.get('images', {}).get('count', 0):,} images · "
            f"{seconds:.0f} s")


def run_on_show(ws: Workspace, run_dir: Path) -> None:
    """The progress card of ``run_dir``, scrolled to after a start, and under it the name a start
    made safe, while that run is on show."""
    live_progress(ws, run_dir)
    scroll_to_progress()
    named = st.session_state.get(NAME_USED)
    if named and named[0] == run_dir.name:
        st.caption(f":material/edit: {named[1]}")
