"""Data & training: pick images, look at them, start / follow / cancel / resume a training job.

Starting a run, or ticking one in the runs table, shows that run on every page. Those buttons act
in callbacks: a callback runs before the sidebar is drawn, the only moment the sidebar's run
picker may be set, and a picker left on the old run would switch the page back to it.
"""
from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from scan_core.config import AUTO, BACKBONES, RunConfig
from scan_core.data.artifacts import save_bytes
from scan_core.data.images import ImageSet
from scan_core.data.run_metrics import RunMetrics
from scan_core.data.rundir import STAGE_NAMES, RunState, planned_stages, read_events
from scan_core.data.sources import ZIP_MAX_FILES, ZIP_MAX_TOTAL_BYTES, load_source
from scan_core.explore import estimates, jobs
from scan_core.explore.compare import compare_runs
from scan_core.explore.workspace import ROOTS_ENV, RUN_NAME_MAX, Workspace, run_name
from scan_core.presets import NAMES as PRESET_NAMES
from scan_core.presets import TIME_BUDGET, plan_config
from ui.curating import curation
from ui.gallery import display_image
from ui.keys import RUN_PARAM, RUN_PICKER
from ui.navigation import page_link, through_navigation
from ui.runs import calibration, choose_run, chosen_run, forget_run, listed_runs, results, workspace
from ui.selection import keep, kept
from ui.suggest import suggestion_of
from ui.text import duration_text

PRESET_BACKBONE = "preset default"
RUNS_TABLE = "runs_table"
SOURCE_KIND, FOLDER = "source_kind", "folder"  # the New run form's image source and typed folder
MANAGED_RUN, NEW_NAME = "managed_run", "new_run_name"  # Rename or delete a run: the run, its new name
MANAGED_FOR = "managed_for"  # the run on show when the managed run was last set to it
PENDING_DELETE = "pending_delete"      # the run whose delete waits for its confirmation
RUN_MESSAGE = "run_message"            # what the last rename or delete did
LAUNCH_REFUSAL = "launch_refusal"      # (button, message) of a start that was refused
LAST_LAUNCH = "last_launch"            # (request, run name) of this browser tab's latest start
NAME_USED = "name_used"                # (run name, message) when a start's name was made safe
REJECTED_UPLOADS = "rejected_uploads"  # saved name of an upload that failed to load -> why
UPLOAD = "upload"                      # the zip uploader's key
SCROLL_TO_PROGRESS = "scroll_to_progress"  # a run just started here: bring its progress card into view
PROGRESS_CARD = "progress_card"          # the card's container key (its CSS class st-key-progress_card)
SCROLL_SECONDS = 30.0  # however slow the first script runs after Start are
PENDING_ICON = ":gray[:material/radio_button_unchecked:]"
NEXT_PAGES = ("Embedding", "Clusters", "Evaluation", "Curate & export")  # linked from a finished run
SOURCES = ("Digits (bundled)", "Fashion-MNIST", "Folder on the server", "Upload a zip")
STATE_ICONS = {RunState.FINISHED: ":green[:material/check_circle:]", RunState.RUNNING: ":blue[:material/progress_activity:]",
               RunState.STARTING: ":blue[:material/progress_activity:]", RunState.FAILED: ":red[:material/error:]",
               RunState.INTERRUPTED: ":orange[:material/warning:]", RunState.CANCELLED: ":gray[:material/stop_circle:]"}
#: How a stopped run's reason (``{error}``) is shown: the user's own cancel is no error.
RESUMES = ("**Resume** keeps every finished stage and training epoch; a pass that was under way (the feature "
           "banks, a stage without epochs) starts again.")
OUTCOMES = {RunState.CANCELLED: (st.info, f"Cancelled by user. {RESUMES}"),
            RunState.INTERRUPTED: (st.warning, f"Interrupted: {{error}}. {RESUMES}"),
            RunState.FAILED: (st.error, "Failed: {error}")}


@st.cache_resource(max_entries=3, show_spinner="Reading the images…")
def preview(spec: str, stamp: float, data_dir: str) -> ImageSet:
    """The images ``spec`` names, loaded once per (spec, modification time); zips are extracted
    into ``data_dir``, where the workspace's jobs read them too."""
    return load_source(spec, data_dir=Path(data_dir))


def open_run(name: str) -> None:
    """Show run ``name`` on every page: the URL's ``?run=`` and the sidebar's run picker (a
    callback's job: a widget's value may be set before the widget is drawn, not after)."""
    choose_run(name)
    st.session_state[RUN_PICKER] = name


def pick_source(ws: Workspace) -> str | None:
    """The source widgets; returns a dataset spec for the job, or None until one is chosen."""
    kind = st.segmented_control("Images", SOURCES, key=kept(SOURCE_KIND, SOURCES[0]))
    keep(SOURCE_KIND)
    if kind == SOURCES[0]:
        return "digits"
    if kind == SOURCES[1]:
        return "fashion-mnist"
    if kind == SOURCES[2]:
        roots = ", ".join(f"`{root}`" for root in ws.data_roots)
        text = st.text_input("Folder or .zip on the server", key=kept(FOLDER, ""),
                             help=f"Must lie inside a data root: {roots} (set {ROOTS_ENV} to change). "
                                  "A relative path is looked up in each data root in turn.")
        keep(FOLDER)
        st.caption(f"Allowed data roots: {roots}. Subfolder names become labels when present.")
        if not text:
            return None
        try:
            return str(ws.confined(text))
        except ValueError as error:
            st.error(str(error))
            return None
    upload = st.file_uploader("A .zip of an image folder", type=["zip"], key=UPLOAD,
                              help="Subfolders inside the zip become labels.")
    st.caption(f"Limits: {st.get_option('server.maxUploadSize')} MB per upload; inside the zip at most "
               f"{ZIP_MAX_FILES:,} files and {ZIP_MAX_TOTAL_BYTES / 2**30:.0f} GiB unpacked. For bigger sets "
               "put the folder on the server and use *Folder on the server*.")
    if upload is None:
        return None
    data = upload.getvalue()
    target = ws.uploads / f"{run_name(Path(upload.name).stem)}-{hashlib.sha256(data).hexdigest()[:8]}.zip"
    refusal = st.session_state.get(REJECTED_UPLOADS, {}).get(target.name)
    if refusal:  # the same bad upload, still in the widget: not written again
        st.error(refusal)
        return None
    if not target.exists():
        save_bytes(target, data)
    return str(target)


def forget_upload(ws: Workspace, path: Path, reason: str) -> None:
    """Delete an uploaded zip that failed to load, unless a run names it (nothing else can use it,
    and uploads may be large); remember why, for :func:`pick_source`."""
    if path.parent != ws.uploads or any(row.dataset == str(path) for row in listed_runs()):
        return
    path.unlink(missing_ok=True)
    st.session_state.setdefault(REJECTED_UPLOADS, {})[path.name] = reason


def load_problem(ws: Workspace, spec: str, error: ValueError) -> str:
    """What a failed load of ``spec`` says: for an upload, the user's file name and the problem
    only, never the paths it was saved and extracted under."""
    upload = st.session_state.get(UPLOAD)
    if upload is None or Path(spec).parent != ws.uploads:
        return str(error)
    return f"{upload.name}: {getattr(error, 'problem', error)}"


def show_preview(ws: Workspace, spec: str) -> ImageSet | None:
    stamp = Path(spec).stat().st_mtime if Path(spec).exists() else 0.0
    try:
        images = preview(spec, stamp, str(ws.data_dir))
    except ValueError as error:  # SourceError and bad arguments: a message, never a traceback
        message = load_problem(ws, spec, error)
        st.error(message)
        forget_upload(ws, Path(spec), message)
        return None
    height, width = images.image_size
    cols = st.columns(4)
    cols[0].metric("Images", f"{len(images):,}")
    cols[1].metric("Working size", f"{height}×{width}")
    cols[2].metric("Channels", "colour" if images.channels == 3 else "grayscale")
    classes = f"{images.num_classes} class{'' if images.num_classes == 1 else 'es'}"
    cols[3].metric("Labels", classes if images.has_labels else "none")
    if images.has_labels:
        st.caption("Classes: " + ", ".join(images.class_names))
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(images), size=min(24, len(images)), replace=False))
    st.image([display_image(images.images[i], 72) for i in sample])
    if images.skipped:
        with st.expander(f"{len(images.skipped)} files were skipped and will not be trained on",
                         icon=":material/warning:"):
            st.dataframe(pd.DataFrame(images.skipped), hide_index=True, width="stretch")
    return images


def start_key(spec: str, field: str) -> str:
    """Session-state key of a start widget; one per dataset, so that another dataset starts from
    its own defaults (K from its label folders), not from the values chosen for the last one."""
    return f"start_{field}:{spec}"


def default_run_name(spec: str, clusters: int | str) -> str:
    return f"{Path(spec).stem.split(':')[0]}-k{clusters}"


def start_form(ws: Workspace, spec: str, images: ImageSet, runs: list[jobs.ListedRun]) -> None:
    """K, preset, backbone, seed, time budget and name of a new run, its expected duration, and Start
    (``runs``: the workspace's, for a suggestion from an earlier run)."""
    default_k = images.num_classes if images.has_labels else min(10, len(images) - 1)
    cols = st.columns(6)
    suggest = cols[0].toggle("Suggest K", value=images.num_classes < 2, key=start_key(spec, "suggest"),
                             help="K is chosen during the run: the number of groups into which the images fall most "
                                  "clearly on a UMAP map of their features; the Clusters page shows the evidence. "
                                  "On by default for a folder without label subfolders.")
    clusters = cols[0].number_input("Clusters K", min_value=2, max_value=max(2, len(images) - 1),
                                    value=max(2, default_k), key=start_key(spec, "clusters"), disabled=suggest,
                                    help="Defaults to the number of label folders; more than the "
                                         "classes (overclustering) works too.")
    preset = cols[1].selectbox("Preset", PRESET_NAMES, key=start_key(spec, "preset"),
                               help="auto: a built-in dataset's own preset, else chosen from the images: grayscale -> "
                                    "heads on the UMAP manifold of their HOG (no network); colour -> the frozen "
                                    "ImageNet EfficientNet-Lite0. hog-manifold: the grayscale route for any images")
    backbone = cols[2].selectbox("Backbone", [PRESET_BACKBONE, *BACKBONES], key=start_key(spec, "backbone"),
                                 help="small-cnn (trained with SimCLR, instead of auto's HOG manifold for grayscale) "
                                      "suits images up to ~32 px; "
                                      "efficientnet-lite0-imagenet (auto's choice for colour) comes with "
                                      "the install and is used frozen; the ImageNet ResNets need their "
                                      "weights on this machine")
    cols[3].number_input("Seed", min_value=0, value=0, key=start_key(spec, "seed"))
    budget = cols[4].number_input("Time budget (min)", min_value=1, max_value=24 * 60, value=int(TIME_BUDGET // 60),
                                  key=start_key(spec, "budget"), disabled=preset != "auto",
                                  help="auto plans the run for this long on this machine: the pretrained "
                                       "backbone's image size and feature banks, SimCLR's epochs (cut at run "
                                       "time from the measured step time)")
    cols[5].number_input("Processes", min_value=1, max_value=max(64, jobs.default_processes()),
                         value=jobs.default_processes(), key=start_key(spec, "processes"),
                         help="Training processes on this machine (torchrun ranks): each trains its share of "
                              "every batch and embeds its share of the images. One per GPU when there are "
                              "several (the default then); on a CPU, more than one only splits its cores.")
    suggest_from_earlier_run(ws, spec, runs)
    st.text_input("Run name", placeholder=default_run_name(spec, AUTO if suggest else int(clusters)), key=start_key(spec, "name"),
                  help="Left empty: the name shown in grey.")
    config = planned_run(spec, images, 0 if suggest else int(clusters), preset,
                         None if backbone == PRESET_BACKBONE else backbone, 60.0 * budget if preset == "auto" else None)
    if config is not None:
        expected_time(ws, config, images)
    st.button("Start training", type="primary", icon=":material/play_arrow:", on_click=start_clicked,
              args=(ws, spec), disabled=config is None)
    show_refusal("form")


def suggest_from_earlier_run(ws: Workspace, spec: str, runs: list[jobs.ListedRun]) -> None:
    """When a run on this dataset has made its features: a Suggest button that shows the K they
    suggest, with the evidence, and fills K with it."""
    earlier = next((row.name for row in runs if row.dataset == spec
                    and (ws.runs / row.name / "features.npy").exists()), None)
    if earlier is None:
        return
    with st.expander(f"Suggest K from the features of {earlier}", icon=":material/query_stats:"):
        if not st.button("Suggest", key=start_key(spec, "suggest_now")):
            st.caption("What the earlier run's features say about the number of clusters (seconds to a minute).")
            return
        suggestion = suggestion_of(ws.runs / earlier)
        if suggestion is None:
            return
        st.button(f"Use K = {suggestion.k}", type="primary", key=start_key(spec, "use_k"), on_click=use_k,
                  args=(spec, suggestion.k))


def use_k(spec: str, k: int) -> None:
    st.session_state[start_key(spec, "clusters")] = k
    st.session_state[start_key(spec, "suggest")] = False


def planned_run(spec: str, images: ImageSet, clusters: int, preset: str, backbone: str | None,
                time_budget: float | None) -> RunConfig | None:
    """The config the job would train with (:func:`scan_core.presets.plan_config`, the job's own check),
    or None with the reason shown, so that Start is not offered for a run that cannot start;
    ``clusters`` 0: suggested during the run."""
    overrides = {**({"backbone": backbone} if backbone else {}), **({"time_budget": time_budget} if time_budget else {})}
    try:
        return plan_config(images, spec, clusters or AUTO, preset, jobs.planning_hardware(), **overrides)
    except ValueError as error:
        st.error(f"Cannot start: {error}.", icon=":material/block:")
        return None


def expected_time(ws: Workspace, config: RunConfig, images: ImageSet) -> None:
    """The note of ``config``'s preset, if any, and a caption with the rough time the run would take
    (:func:`scan_core.explore.estimates.expected_seconds`)."""
    if config.note:
        st.info(config.note, icon=":material/info:")
    side = images.image_size[0]
    seconds = estimates.expected_seconds(config, len(images), side, calibration(ws))
    st.caption(f":material/schedule: Expected training time: about **{duration_text(seconds)}**. An estimate "
               f"from the {len(images):,} images and the epochs of the *{config.preset}* preset, each stage scaled "
               "by how fast it went in the latest finished runs here; a busy machine takes longer.")


def start_clicked(ws: Workspace, spec: str) -> None:
    """Start's callback: launch a run with the values the widgets hold."""
    def value(field: str):
        return st.session_state[start_key(spec, field)]

    clusters = AUTO if value("suggest") else int(value("clusters"))
    backbone, preset = value("backbone"), value("preset")
    launch(ws, spec, clusters, value("name").strip() or default_run_name(spec, clusters), preset,
           None if backbone == PRESET_BACKBONE else backbone, int(value("seed")), origin="form",
           time_budget=60.0 * value("budget") if preset == "auto" else None, processes=int(value("processes")))


def launch(ws: Workspace, spec: str, clusters: int | str, name: str, preset: str = "auto",
           backbone: str | None = None, seed: int = 0, origin: str = "form", time_budget: float | None = None,
           processes: int = 1) -> None:
    """A start button's callback: launch the job and show its run on every page. A refusal is
    kept for :func:`show_refusal` to draw beside the button ``origin`` names."""
    request = (spec, clusters, name, preset, backbone, seed, time_budget, processes)
    try:
        run_dir = jobs.start(ws, spec, clusters, name=name, preset=preset, backbone=backbone, seed=seed,
                             time_budget=time_budget, processes=processes)
    except jobs.JobBusy as error:
        earlier = st.session_state.get(LAST_LAUNCH)
        active = jobs.active_run(ws)
        if earlier is not None and earlier[0] == request and active is not None and active.name == earlier[1]:
            open_run(earlier[1])  # the same Start clicked twice: the run the first click started
            return
        st.session_state[LAUNCH_REFUSAL] = (origin, f"Not started: {error}.")
        return
    except ValueError as error:
        st.session_state[LAUNCH_REFUSAL] = (origin, str(error))
        return
    st.session_state[LAST_LAUNCH] = (request, run_dir.name)
    st.session_state[SCROLL_TO_PROGRESS] = (run_dir.name, time.time())
    if run_dir.name != name:
        st.session_state[NAME_USED] = (run_dir.name, f"Named **{run_dir.name}**: a run's name keeps letters, "
                                       f"digits, `.` and `_`, other characters become `-`, at most {RUN_NAME_MAX} "
                                       "characters.")
    open_run(run_dir.name)


def show_refusal(origin: str) -> None:
    """Why the start button ``origin`` names did not start a run, once."""
    refusal = st.session_state.get(LAUNCH_REFUSAL)
    if refusal and refusal[0] == origin:
        st.warning(st.session_state.pop(LAUNCH_REFUSAL)[1])


@st.fragment(run_every=1.5)
def live_progress(ws: Workspace, run_dir: Path) -> None:
    """Polls the run's status and events from disk every 1.5 s; never blocks on the job."""
    with st.container(border=True, key=PROGRESS_CARD):
        progress_card(ws, run_dir)


_SCROLL_JS = """
export default function (component) {  // once the card is drawn (it may come a moment after this)
  let tries = 0;
  const timer = setInterval(() => {
    const card = document.querySelector('.st-key-' + component.data.target);
    if (card) card.scrollIntoView({block: 'start'});
    if (card || ++tries > 100) clearInterval(timer);
  }, 100);
  return () => clearInterval(timer);
}
"""
_scroll = st.components.v2.component("scan_scroll_into_view", js=_SCROLL_JS)


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


def main() -> None:
    ws = workspace()
    st.title("Data & training")
    runs = listed_runs()
    if not runs:
        with st.container(border=True):
            st.markdown("### :material/waving_hand: New here? Train on the bundled handwritten digits\n"
                        "1,797 images, 10 classes, about a minute on a laptop CPU. Then explore the "
                        "clusters, fix them and export the labels.")
            st.button("Run the digits demo", type="primary", icon=":material/rocket_launch:", on_click=launch,
                      args=(ws, "digits", 10, "digits-demo"), kwargs={"preset": "digits", "origin": "demo"})
            show_refusal("demo")
    run_dir = chosen_run()
    if run_dir is not None:
        live_progress(ws, run_dir)
        scroll_to_progress()
        named = st.session_state.get(NAME_USED)
        if named and named[0] == run_dir.name:  # said under the card while this run is on show
            st.caption(f":material/edit: {named[1]}")
    active = jobs.active_run(ws)
    if active is not None and active != (run_dir.resolve() if run_dir else None):
        st.info(f"Training now: **{active.name}** (one training at a time on this machine).")
    st.header("New run")
    st.subheader("1 · Images")
    spec = pick_source(ws)
    images = show_preview(ws, spec) if spec else None
    if images is not None:
        st.subheader("2 · Train")
        start_form(ws, spec, images, runs)
    runs_table(runs)
    manage_runs(ws, runs)


through_navigation()
main()
