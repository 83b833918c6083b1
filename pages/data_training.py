"""Data & training: pick images, look at them, start / follow / cancel / resume a training job."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from scan_core.config import BACKBONES
from scan_core.data.artifacts import save_bytes
from scan_core.data.images import ImageSet
from scan_core.data.rundir import STAGE_NAMES, read_events
from scan_core.data.sources import ZIP_MAX_FILES, ZIP_MAX_TOTAL_BYTES, load_source
from scan_core.explore import jobs
from scan_core.presets import NAMES as PRESET_NAMES
from ui.gallery import display_image
from ui.state import choose_run, chosen_run, through_navigation, workspace

PRESET_BACKBONE = "preset default"
PENDING_ICON = ":gray[:material/radio_button_unchecked:]"
NEXT_PAGES = (("pages/embedding.py", "Embedding", ":material/scatter_plot:"),
              ("pages/clusters.py", "Clusters", ":material/category:"),
              ("pages/evaluation.py", "Evaluation", ":material/analytics:"),
              ("pages/curate_export.py", "Curate & export", ":material/edit_note:"))
SOURCES = ("Digits (bundled)", "Fashion-MNIST", "Folder on the server", "Upload a zip")
STATE_ICONS = {"finished": ":green[:material/check_circle:]", "running": ":blue[:material/progress_activity:]",
               "starting": ":blue[:material/progress_activity:]", "failed": ":red[:material/error:]",
               "interrupted": ":orange[:material/warning:]", "cancelled": ":gray[:material/stop_circle:]"}


@st.cache_resource(max_entries=3, show_spinner="Reading the images…")
def preview(spec: str, stamp: float) -> ImageSet:
    """The images ``spec`` names, loaded once per (spec, modification time)."""
    return load_source(spec)


def pick_source(ws: jobs.Workspace) -> str | None:
    """The source widgets; returns a dataset spec for the job, or None until one is chosen."""
    kind = st.segmented_control("Images", SOURCES, default=SOURCES[0], key="source_kind")
    if kind == SOURCES[0]:
        return "digits"
    if kind == SOURCES[1]:
        return "fashion-mnist"
    if kind == SOURCES[2]:
        roots = ", ".join(f"`{root}`" for root in ws.data_roots)
        text = st.text_input("Folder or .zip on the server", key="folder",
                             help=f"Must lie inside a data root: {roots} (set {jobs.ROOTS_ENV} to change).")
        st.caption(f"Allowed data roots: {roots}. Subfolder names become labels when present.")
        if not text:
            return None
        try:
            return str(ws.confined(text))
        except ValueError as error:
            st.error(str(error))
            return None
    upload = st.file_uploader("A .zip of an image folder", type=["zip"], key="upload",
                              help="Subfolders inside the zip become labels.")
    st.caption(f"Limits: {st.get_option('server.maxUploadSize')} MB per upload; inside the zip at most "
               f"{ZIP_MAX_FILES:,} files and {ZIP_MAX_TOTAL_BYTES / 2**30:.0f} GiB unpacked. For bigger sets "
               "put the folder on the server and use *Folder on the server*.")
    if upload is None:
        return None
    data = upload.getvalue()
    target = ws.uploads / f"{jobs.run_name(Path(upload.name).stem)}-{hashlib.sha256(data).hexdigest()[:8]}.zip"
    if not target.exists():
        save_bytes(target, data)
    return str(target)


def show_preview(spec: str) -> ImageSet | None:
    stamp = Path(spec).stat().st_mtime if Path(spec).exists() else 0.0
    try:
        images = preview(spec, stamp)
    except ValueError as error:  # SourceError and bad arguments: a message, never a traceback
        st.error(str(error))
        return None
    height, width = images.image_size
    cols = st.columns(4)
    cols[0].metric("Images", f"{len(images):,}")
    cols[1].metric("Working size", f"{height}×{width}")
    cols[2].metric("Channels", "colour" if images.channels == 3 else "grayscale")
    cols[3].metric("Labels", f"{images.num_classes} classes" if images.has_labels else "none")
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


def start_form(ws: jobs.Workspace, spec: str, images: ImageSet) -> None:
    default_k = images.num_classes if images.has_labels else min(10, len(images) - 1)
    with st.form("start"):
        cols = st.columns(4)
        clusters = cols[0].number_input("Clusters K", min_value=2, max_value=max(2, len(images) - 1),
                                        value=max(2, default_k),
                                        help="Defaults to the number of label folders; more than the "
                                             "classes (overclustering) works too.")
        preset = cols[1].selectbox("Preset", PRESET_NAMES, help="auto: chosen from the dataset name, else from "
                                                           "image size, colour and count")
        backbone = cols[2].selectbox("Backbone", [PRESET_BACKBONE, *BACKBONES],
                                     help="small-cnn suits images up to ~32 px; the ImageNet ResNets need "
                                          "their weights on this machine")
        seed = cols[3].number_input("Seed", min_value=0, value=0)
        name = st.text_input("Run name", value=f"{Path(spec).stem.split(':')[0]}-k{clusters}")
        if st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:"):
            launch(ws, spec, int(clusters), name, preset, None if backbone == PRESET_BACKBONE else backbone,
                   int(seed))


def launch(ws: jobs.Workspace, spec: str, clusters: int, name: str, preset: str = "auto",
           backbone: str | None = None, seed: int = 0) -> None:
    try:
        run_dir = jobs.start(ws, spec, clusters, name=name, preset=preset, backbone=backbone, seed=seed)
    except jobs.JobBusy as error:
        st.warning(f"Not started: {error}.")
        return
    except ValueError as error:
        st.error(str(error))
        return
    choose_run(run_dir.name)
    st.rerun()


@st.fragment(run_every=1.5)
def live_progress(ws: jobs.Workspace, run_dir: Path) -> None:
    """Polls the run's status and events from disk every 1.5 s; never blocks on the job."""
    with st.container(border=True):
        progress_card(ws, run_dir)


def progress_card(ws: jobs.Workspace, run_dir: Path) -> None:
    """Stages, the current stage's progress and ETA, its loss curve, Cancel / Resume."""
    state = jobs.job_state(ws, run_dir)
    events = read_events(run_dir)
    completed = set(state.get("completed") or [])
    current = state.get("stage")
    st.subheader(f"{STATE_ICONS.get(state['state'], '')} {run_dir.name} — {state['state']}")
    cols = st.columns(len(STAGE_NAMES))
    for col, stage in zip(cols, STAGE_NAMES):
        active = stage == current and state["state"] in ("running", "starting")
        mark = STATE_ICONS["finished"] if stage in completed else STATE_ICONS["running"] if active else PENDING_ICON
        col.markdown(f"{mark} **{stage}**")
    steps = [e for e in events if e.get("kind") == "step" and e.get("stage") == current]
    if state["state"] in ("running", "starting"):
        if steps:
            last = steps[-1]
            eta = last.get("eta_s")
            st.progress(min(1.0, last["step"] / max(1, last["total"])),
                        text=f"{current}: step {last['step']:,} / {last['total']:,}"
                             + (f" · ETA {eta:.0f} s" if eta is not None else ""))
        else:
            st.progress(0.0, text=f"{current or 'starting'}: preparing…")
    losses = [(e["step"], e["loss"]) for e in steps if e.get("loss") is not None]
    if losses:
        st.line_chart(pd.DataFrame(losses, columns=["step", "loss"]).set_index("step"), height=180)
    if state["state"] == "finished":
        final = finished_summary(run_dir)
        if final:
            st.markdown(final)
        links = st.columns(4)
        for col, (page, label, icon) in zip(links, NEXT_PAGES):
            col.page_link(page, label=label, icon=icon, query_params={"run": run_dir.name})
    if state.get("error") and state["state"] != "finished":
        st.error(f"{state['state'].capitalize()}: {state['error']}")
    buttons = st.columns([1, 1, 4])
    if state["state"] in ("running", "starting"):
        if buttons[0].button("Cancel", icon=":material/stop:", key="cancel"):
            jobs.cancel(ws, run_dir)
            st.toast("Cancelling… the job stops after its current step.")
    elif state["state"] in ("interrupted", "cancelled", "failed") and buttons[0].button(
            "Resume", icon=":material/replay:", key="resume", type="primary"):
        try:
            jobs.resume(ws, run_dir)
        except (jobs.JobBusy, ValueError) as error:
            st.warning(str(error))
    if state["state"] != st.session_state.get("page_state"):
        st.rerun(scope="app")  # the job changed state: refresh the sidebar and the runs table too


def finished_summary(run_dir: Path) -> str:
    """One line of the final stage's scores and the run's total time, from ``metrics.json``."""
    metrics = jobs.read_metrics(run_dir)
    final = jobs.final_scores(metrics)
    seconds = sum(m.get("seconds", 0) for m in metrics.values() if isinstance(m, dict))
    scores = " · ".join(f"{name} **{final[key]:.3f}**"
                        for key, name in (("acc", "ACC"), ("nmi", "NMI"), ("ari", "ARI")) if key in final)
    return f"{scores + ' · ' if scores else ''}{metrics.get('images', {}).get('count', 0):,} images · {seconds:.0f} s"


def runs_table(ws: jobs.Workspace) -> None:
    runs = jobs.list_runs(ws)
    if not runs:
        return
    st.subheader("Runs")
    table = pd.DataFrame(runs)
    table["created"] = pd.to_datetime(table["created"], unit="s").dt.strftime("%Y-%m-%d %H:%M")
    event = st.dataframe(table[["run", "state", "dataset", "clusters", "preset", "acc", "nmi", "created"]],
                         hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                         key="runs_table",
                         column_config={"acc": st.column_config.NumberColumn("ACC", format="%.3f"),
                                        "nmi": st.column_config.NumberColumn("NMI", format="%.3f"),
                                        "dataset": st.column_config.TextColumn("dataset", max_chars=40)})
    rows = event.selection.rows
    if rows and runs[rows[0]]["run"] != (chosen_run() or Path()).name:
        choose_run(runs[rows[0]]["run"])
        st.rerun()


def main() -> None:
    ws = workspace()
    st.title("Data & training")
    if not jobs.list_runs(ws):
        with st.container(border=True):
            st.markdown("### :material/waving_hand: New here? Train on the bundled handwritten digits\n"
                        "1,797 images, 10 classes, about a minute on a laptop CPU. Then explore the "
                        "clusters, fix them and export the labels.")
            if st.button("Run the digits demo", type="primary", icon=":material/rocket_launch:"):
                launch(ws, "digits", 10, "digits-demo", preset="digits")
    run_dir = chosen_run()
    if run_dir is not None:
        st.session_state["page_state"] = jobs.job_state(ws, run_dir)["state"]
        live_progress(ws, run_dir)
    active = jobs.active_run(ws)
    if active is not None and active != (run_dir.resolve() if run_dir else None):
        st.info(f"Training now: **{active.name}** (one training at a time on this machine).")
    st.header("New run")
    st.subheader("1 · Images")
    spec = pick_source(ws)
    images = show_preview(spec) if spec else None
    if images is not None:
        st.subheader("2 · Train")
        start_form(ws, spec, images)
    runs_table(ws)


through_navigation()
main()
