"""Data & training: pick images, look at them, start / follow / cancel / resume a training job.

Starting a run, or ticking one in the runs table, shows that run on every page. Those buttons act
in callbacks: a callback runs before the sidebar is drawn, the only moment the sidebar's run
picker may be set, and a picker left on the old run would switch the page back to it.

The sections are drawn by ``ui.new_run`` (images, start form, launch), ``ui.progress`` (the run on
show) and ``ui.run_table`` (runs table, rename / delete, comparison), from the runs the sidebar
listed for this script run.
"""
from __future__ import annotations

import streamlit as st

from scan_core.explore import jobs
from ui.navigation import through_navigation
from ui.new_run import digits_demo, new_run
from ui.progress import run_on_show
from ui.run_table import manage_runs, runs_table
from ui.runs import chosen_run, listed_runs, workspace


def main() -> None:
    ws = workspace()
    st.title("Data & training")
    runs = listed_runs()
    if not runs:
        digits_demo(ws)
    run_dir = chosen_run()
    if run_dir is not None:
        run_on_show(ws, run_dir)
    active = jobs.active_run(ws)
    if active is not None and active != (run_dir.resolve() if run_dir else None):
        st.info(f"Training now: **{active.name}** (one training at a time on this machine).")
    new_run(ws, runs)
    runs_table(runs)
    manage_runs(ws, runs)


through_navigation()
main()
