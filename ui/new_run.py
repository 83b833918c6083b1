"""New run on the Data & training page: the image source (bundled, a server folder or an uploaded
zip), a preview of its images, the start form (K, preset, backbone, seed, time budget, processes,
name) with the run's expected time, and the launch, in a callback (:func:`launch`): a second click
of the same Start opens the run the first one started instead of saying a training is running.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from scan_core.config import AUTO, BACKBONES, RunConfig
from scan_core.data.artifacts import save_bytes
from scan_core.data.images import ImageSet
from scan_core.data.sources import ZIP_MAX_FILES, ZIP_MAX_TOTAL_BYTES, load_source
from scan_core.explore import estimates, jobs
from scan_core.explore.workspace import ROOTS_ENV, RUN_NAME_MAX, Workspace, run_name
from scan_core.presets import NAMES as PRESET_NAMES
from scan_core.presets import TIME_BUDGET, plan_config
from ui.gallery import display_image
from ui.keys import NAME_USED, SCROLL_TO_PROGRESS
from ui.runs import calibration, listed_runs, open_run
from ui.selection import keep, kept
from ui.suggest import suggestion_of
from ui.text import duration_text

PRESET_BACKBONE = "preset default"
SOURCE_KIND, FOLDER = "source_kind", "folder"  # the New run form's image source and typed folder
LAUNCH_REFUSAL = "launch_refusal"      # (button, message) of a start that was refused
LAST_LAUNCH = "last_launch"            # (request, run name) of this browser tab's latest start
REJECTED_UPLOADS = "rejected_uploads"  # saved name of an upload that failed to load -> why
UPLOAD = "upload"                      # the zip uploader's key
SOURCES = ("Digits (bundled)", "Fashion-MNIST", "Folder on the server", "Upload a zip")


@st.cache_resource(max_entries=3, show_spinner="Reading the images…")
def preview(spec: str, stamp: float, data_dir: str) -> ImageSet:
    """The images ``spec`` names, loaded once per (spec, modification time); zips are extracted
    into ``data_dir``, where the workspace's jobs read them too."""
    return load_source(spec, data_dir=Path(data_dir))


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


def new_run(ws: Workspace, runs: list[jobs.ListedRun]) -> None:
    """The New run section: the images, then (once they load) the start form (``runs``: the
    workspace's, for a K suggested from an earlier run of the same images)."""
    st.header("New run")
    st.subheader("1 · Images")
    spec = pick_source(ws)
    images = show_preview(ws, spec) if spec else None
    if images is not None:
        st.subheader("2 · Train")
        start_form(ws, spec, images, runs)


def digits_demo(ws: Workspace) -> None:
    """For an empty workspace: a card that trains the bundled digits in one click."""
    with st.container(border=True):
        st.markdown("### :material/waving_hand: New here? Train on the bundled handwritten digits\n"
                    "1,797 images, 10 classes, about a minute on a laptop CPU. Then explore the "
                    "clusters, fix them and export the labels.")
        st.button("Run the digits demo", type="primary", icon=":material/rocket_launch:", on_click=launch,
                  args=(ws, "digits", 10, "digits-demo"), kwargs={"preset": "digits", "origin": "demo"})
        show_refusal("demo")
