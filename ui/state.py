"""What every page shares: the workspace, the chosen run (kept in ``st.query_params`` so a refresh
keeps it), cached artifact reads keyed by run and file mtime, the curation store, the user's name.

Pages call :func:`require_results` at the top and draw; nothing here trains or recomputes a stage.
"""
from __future__ import annotations

import runpy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from scan_core.data.rundir import STAGES
from scan_core.explore.curation import CuratedState, Curation
from scan_core.explore.jobs import Workspace, job_state, list_runs, run_name
from scan_core.explore.results import RunNotReady, RunResults
from ui.text import markdown_text

RUN_PARAM = "run"
RUN_PICKER = "run_picker"  # the sidebar's run selectbox
WORKING = ("running", "starting")
WATCH_SECONDS = 2.0
PICKED = "picked_images"   # {"run", "ids"}: thumbnails picked in the galleries (ui.state.picked)
KEPT = "kept_widgets"      # widget key -> the value it had when last drawn (ui.state.kept)
WHO_PARAM = "who"
MAX_WHO = 100  # the curation log's limit on names
APP = Path(__file__).resolve().parent.parent / "app.py"
NAVIGATED: ContextVar[bool] = ContextVar("scan_explorer_navigated", default=False)
#: What a page reads of a run: a new or redone file changes the cache key of what it derives (the
#: stages' arrays and records, and the features' own neighbours the neighbors stage may add).
ARTIFACTS = ("config.json", "metrics.json", *(name for stage in STAGES for name in stage.artifacts
                                             if not name.endswith(".pt")), "feature_neighbors.npy")


def through_navigation() -> None:
    """Run ``app.py`` (layout, sidebar, ``st.navigation``) around a page that Streamlit started alone.

    Streamlit treats a folder named ``pages/`` beside the entry script as its legacy multipage
    mode until a script run calls ``st.navigation``: the first request of a fresh server that names
    a page (a bookmarked URL), and every run under ``AppTest``, which resets that mode, runs the
    page without ``app.py``. Streamlit offers no setting to turn the legacy mode off, and the
    product's layout names the folder ``pages/``, so a page checks whether ``app.py`` is around it
    (:data:`NAVIGATED`, set by :func:`navigated_run`) and otherwise runs ``app.py`` in the same
    script run (so a clicked button still counts), which calls ``st.navigation`` (ending the legacy
    mode) and runs this page again inside it; the outer run then stops.
    """
    if not NAVIGATED.get():
        runpy.run_path(str(APP), run_name="__main__")
        st.stop()


@contextmanager
def navigated_run() -> Iterator[None]:
    """``app.py`` runs the chosen page inside this block, so that the page knows it is in the app."""
    token = NAVIGATED.set(True)
    try:
        yield
    finally:
        NAVIGATED.reset(token)


def workspace() -> Workspace:
    """The workspace ``$SCAN_EXPLORER_HOME`` names (read each rerun: cheap, and tests switch it)."""
    return Workspace.from_env()


def _signature(run_dir: Path) -> tuple:
    """mtimes of the artifacts a page reads: a new artifact or a redone stage changes the key."""
    return tuple((run_dir / name).stat().st_mtime_ns if (run_dir / name).exists() else 0 for name in ARTIFACTS)


@st.cache_resource(max_entries=4, show_spinner="Reading the run…")
def _load_results(run_dir: str, signature: tuple) -> RunResults:
    return RunResults.load(Path(run_dir))


def results(run_dir: Path) -> RunResults:
    return _load_results(str(run_dir), _signature(run_dir))


def results_key(loaded: RunResults) -> tuple:
    """The run and the mtimes of its artifacts: a cache key for what a page derives from them."""
    return str(loaded.dir), _signature(loaded.dir)


def chosen_run() -> Path | None:
    """The run named in the URL (or remembered by this session), if it still exists. A name that
    is no run of the workspace (mistyped, too long, with odd characters) is remembered in
    ``unknown_run`` for the sidebar to say so, and None is returned."""
    name = st.query_params.get(RUN_PARAM) or st.session_state.get(RUN_PARAM)
    if not name:
        return None
    run_dir = workspace().runs / run_name(name)
    if run_name(name) != name or not run_dir.is_dir():
        st.session_state["unknown_run"] = name
        st.session_state.pop(RUN_PARAM, None)
        return None
    st.session_state[RUN_PARAM] = run_dir.name
    if st.query_params.get(RUN_PARAM) != run_dir.name:
        st.query_params[RUN_PARAM] = run_dir.name  # page switches drop query params: put it back
    return run_dir


def choose_run(name: str) -> None:
    st.session_state[RUN_PARAM] = name
    st.query_params[RUN_PARAM] = name


def forget_run() -> None:
    """Show no run in particular (the one shown was deleted): the sidebar picks the newest."""
    st.session_state.pop(RUN_PARAM, None)
    if RUN_PARAM in st.query_params:
        del st.query_params[RUN_PARAM]


def sidebar() -> None:
    """Run switcher and the curator's name, on every page."""
    runs = list_runs(workspace())
    current = chosen_run()
    if current is None and runs:
        finished = [r["run"] for r in runs if r["state"] == "finished"]
        choose_run(finished[0] if finished else runs[0]["run"])
        current = chosen_run()
    unknown = st.session_state.get("unknown_run")  # said until the user picks a run
    if unknown is not None:
        shown = unknown if len(unknown) <= 60 else unknown[:60] + "…"
        st.warning(f"There is no run named “{markdown_text(shown)}” in this workspace"
                   + (f"; showing **{current.name}** instead." if current else "."), icon=":material/warning:")
    with st.sidebar:
        if runs:
            names = [r["run"] for r in runs]
            index = names.index(current.name) if current and current.name in names else 0
            # the state goes beside the picker, not into its labels: a selectbox keeps showing the
            # label its value had when first drawn, so "running" would stay after the run ended
            picked = st.selectbox("Run", names, index=index, key=RUN_PICKER)
            if current is None or picked != current.name:
                choose_run(picked)
                st.session_state.pop("unknown_run", None)
            state = next(r["state"] for r in runs if r["run"] == picked)
            st.caption(f"{markdown_text(picked)} · {state}")
            if any(r["state"] in WORKING for r in runs):
                watch_runs({r["run"]: r["state"] for r in runs})
        remember_who()
        st.text_input("Your name (recorded with every edit)", key="who", placeholder="anonymous", max_chars=MAX_WHO,
                      help="Kept in the page's address (?who=), so a refresh or a bookmark keeps it")


@st.fragment(run_every=WATCH_SECONDS)
def watch_runs(drawn: dict[str, str]) -> None:
    """While a run trains, every :data:`WATCH_SECONDS`: rerun the whole app when a run's state is no
    longer the one the page was drawn with (``drawn``: run -> state), so that the sidebar, the
    progress card and a page waiting for a stage never show a state that has passed."""
    if {r["run"]: r["state"] for r in list_runs(workspace())} != drawn:
        st.rerun(scope="app")


def remember_who() -> None:
    """Keep the curator's name in the URL: restored from ``?who=`` after a refresh, put back after
    a page switch (which drops query parameters), like the run."""
    if "who" not in st.session_state and st.query_params.get(WHO_PARAM):
        st.session_state["who"] = st.query_params[WHO_PARAM][:MAX_WHO]
    name = (st.session_state.get("who") or "").strip()
    if name and st.query_params.get(WHO_PARAM) != name:
        st.query_params[WHO_PARAM] = name
    elif not name and WHO_PARAM in st.query_params:
        del st.query_params[WHO_PARAM]


def who() -> str:
    """The curator's name for the edit log (``anonymous`` when none is given)."""
    return (st.session_state.get("who") or "").strip()[:MAX_WHO] or "anonymous"


def kept(key: str, default: Any = None) -> str:
    """``key`` for a widget whose value should outlive the page (drawn without a default of its own):
    before the widget is drawn, its session state is set to the value it had when a page last drew it,
    else ``default``. Streamlit forgets the state of a widget that a script run does not draw (after
    Back, or a visit to another page); the copy kept here survives. Call :func:`keep` after drawing."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(KEPT, {}).get(key, default)
    return key


def keep(key: str) -> None:
    """Remember the value of the widget ``key`` (:func:`kept`)."""
    st.session_state.setdefault(KEPT, {})[key] = st.session_state.get(key)


def image_number(text: str, n: int) -> int | None:
    """``text`` (``12`` or ``#12``, ASCII digits only) as an image index in ``[0, n)``, else None."""
    digits = str(text).strip().removeprefix("#")
    return int(digits) if digits.isascii() and digits.isdigit() and int(digits) < n else None


def require_results(need: tuple[str, ...] = ("probs",)) -> RunResults:
    """The chosen run's results, or a plain message (no run, still running, missing artifact)
    and ``st.stop()``. ``need`` names what the page cannot do without: ``probs``,
    ``projection``, ``neighbors``, ``features``, ``labels``."""
    run_dir = chosen_run()
    if run_dir is None:
        st.info("No run yet. Start one on **Data & training** — the digits demo takes about a minute.")
        st.page_link("pages/data_training.py", label="Go to Data & training", icon=":material/model_training:")
        st.stop()
    state = job_state(workspace(), run_dir)
    try:
        loaded = results(run_dir)
        missing = [what for what in need if not _has(loaded, what)]
    except RunNotReady:
        loaded, missing = None, list(need)
    if missing:
        if state["state"] in ("running", "starting"):
            st.info(f"**{run_dir.name}** is still training (stage: {state.get('stage') or 'starting'}). "
                    "This page fills in when the stage it needs has finished.")
        elif "labels" in missing:
            st.info(f"**{run_dir.name}** has no labels (its images came without label folders), "
                    "so there is nothing to score against. Curate it on **Curate & export**.")
        else:
            st.warning(f"**{run_dir.name}** ({state['state']}) lacks: {', '.join(missing)}. "
                       + (f"Reason: {state['error']}. " if state.get("error") else "")
                       + "Resume it on **Data & training**.")
        st.stop()
    return loaded


def _has(loaded: RunResults, what: str) -> bool:
    if what == "probs":
        return loaded.final_stage is not None
    if what == "labels":
        return loaded.images.has_labels
    return getattr(loaded, what) is not None


def curation(loaded: RunResults) -> Curation:
    return Curation(loaded.dir, loaded.clusters, loaded.images.ids)


def curated(loaded: RunResults) -> CuratedState:
    """The current curated state (replayed from SQLite each rerun, so other sessions' edits show).

    Pages call it once per run. It also remembers the version this tab's previous script run showed:
    the state the user was looking at when they clicked (:func:`seen_version`).
    """
    state = curation(loaded).state()
    shown = st.session_state.get("shown_version")
    previous = shown["version"] if shown and shown["run"] == str(loaded.dir) else state.version
    st.session_state["seen_version"] = previous
    st.session_state["shown_version"] = {"run": str(loaded.dir), "version": state.version}
    return state


def seen_version() -> int:
    """The curation version on screen when the user acted (see :func:`curated`), for ``seen=``."""
    return int(st.session_state["seen_version"])


def clusters_changed(loaded: RunResults, state: CuratedState) -> str | None:
    """Why a choice among clusters made on the previous screen cannot be trusted: a message when
    clusters appeared or disappeared since then (another session merged, split or moved; a widget
    would have fallen back to another cluster), else None."""
    seen = seen_version()
    if seen == state.version:
        return None
    store = curation(loaded)
    then = store.state_at(seen)
    if cluster_options(then) == cluster_options(state):
        return None
    gone = sorted(set(cluster_options(then)) - set(cluster_options(state)))
    change = store.history(limit=1)[0]
    what = f"cluster {gone[0]} no longer exists" if gone else "the clusters changed"
    return (f"Not done: {what} (edit #{change['id']} by {markdown_text(change['who'])}, {change['kind']}, after "
            "this page was drawn). The page now shows the current clusters; check your choice and try again.")


def edit(action: Callable[[], Any], done: str | Callable[[Any], str],
         after: Callable[[Any], object] | None = None) -> bool:
    """Run one curation edit; a refused one (StaleEdit, ValueError) is shown as a message, never a
    traceback. A successful one shows ``done`` (or ``done(result)``: what ``action`` returned, such
    as a split's new cluster), calls ``after(result)`` and reruns the page."""
    try:
        result = action()
    except ValueError as error:  # StaleEdit included
        st.error(f"Not done: {markdown_text(error)}")
        return False
    if after is not None:
        after(result)
    st.toast(done(result) if callable(done) else done)
    st.rerun()
    return True


def cluster_title(state: CuratedState, cluster: int) -> str:
    name = state.names.get(int(cluster))
    return f"{cluster} · {name}" if name else f"cluster {cluster}"


def cluster_titles(state: CuratedState) -> dict[int, str]:
    """:func:`cluster_title` of every cluster with members."""
    return {c: cluster_title(state, c) for c in cluster_options(state)}


def cluster_options(state: CuratedState) -> list[int]:
    """Cluster ids that have members in the curated state."""
    return [int(c) for c in np.unique(state.clusters)]


def selection(loaded: RunResults) -> np.ndarray:
    """The image indices last selected on this run's map (Embedding), for the galleries and edits."""
    kept = st.session_state.get("selection")
    if not kept or kept["run"] != str(loaded.dir):
        return np.zeros(0, dtype=np.int64)
    return np.asarray(kept["ids"], dtype=np.int64)


def set_selection(loaded: RunResults, indices) -> None:
    st.session_state["selection"] = {"run": str(loaded.dir), "ids": np.asarray(indices, dtype=np.int64).tolist()}


def picked(loaded: RunResults) -> list[int]:
    """The thumbnails picked (Ctrl- or Shift-click) in this run's galleries, in the order picked."""
    kept = st.session_state.get(PICKED)
    return list(kept["ids"]) if kept and kept["run"] == str(loaded.dir) else []


def set_picked(loaded: RunResults, indices) -> None:
    st.session_state[PICKED] = {"run": str(loaded.dir), "ids": [int(i) for i in indices]}
