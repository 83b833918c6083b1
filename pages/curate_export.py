"""Curate & export: name clusters from their prototypes, relabel / move / flag images, undo, and
export the curated labels (CSV, JSON, ImageFolder, Label Studio). Every edit goes to SQLite."""
from __future__ import annotations

import time
from datetime import datetime

import numpy as np
import pandas as pd
import streamlit as st

from scan_core.explore import export
from scan_core.explore.curation import cluster_label
from ui.curating import (
    cluster_box,
    cluster_options,
    clusters_changed,
    curated,
    curation,
    edit,
    review,
    seen_version,
    who,
)
from ui.detail import detail_view
from ui.gallery import data_uri, gallery
from ui.keys import EDIT_IMAGES_TAB, TAB_PARAM
from ui.names import names_overview, suggestion_text
from ui.navigation import through_navigation
from ui.runs import require_results, workspace
from ui.selection import image_number, selection
from ui.text import markdown_text

PROTOTYPE_PX = 80  # the prototypes' side in the Name clusters table
SHOWN_VALUES = 5  # values of an edit's array the history shows
ACTIONS = ("Set label", "Move to cluster", "Mark as outlier", "Unmark outlier", "Clear label override")


def name_clusters(results, state) -> None:
    """An editable table: one row per cluster with its three most confident members; a name is
    saved as soon as it is typed (Enter, or leaving its cell)."""
    thumbs = results.thumbnails()
    rows, sizes = [], state.cluster_sizes()
    options = cluster_options(state)
    suggested = names_overview(results, state, "accept_all_names_table").suggestions
    for cluster in options:
        top = results.members(state.clusters, cluster)[:3]
        rows.append({"cluster": cluster, "size": int(sizes[cluster]),
                     **{f"p{k}": data_uri(thumbs[i], PROTOTYPE_PX) for k, i in enumerate(top)},
                     "name": state.names.get(cluster, ""),
                     **({"suggestion": suggestion_text(suggested[cluster])} if suggested else {})})
    table = pd.DataFrame(rows)
    st.caption("Type a name and press Enter: it is saved at once (undo on the History tab).")
    # the editor's edits name rows by position: a new editor for another set of clusters
    edited = st.data_editor(
        table, hide_index=True, width="stretch", row_height=PROTOTYPE_PX + 8,
        disabled=["cluster", "size", "p0", "p1", "p2", "suggestion"], key=f"names_editor_{'_'.join(map(str, options))}",
        column_config={
            **{f"p{k}": st.column_config.ImageColumn("" if k else "prototypes", width=PROTOTYPE_PX + 16)
               for k in range(3)},
            "name": st.column_config.TextColumn("name", max_chars=100, help="Type a name: it is saved at once"),
            "suggestion": st.column_config.TextColumn(
                "suggestion", help="From the backbone's ImageNet classes: the name, its share of the cluster, the "
                                   "top classes under it (Accept all above names the clusters without a name)")})
    changed = [(int(r.cluster), str(r.name).strip()) for r in edited.itertuples()
               if str(r.name or "").strip() and str(r.name).strip() != state.names.get(int(r.cluster), "")]
    if not changed:
        return
    stale = clusters_changed(results, state)  # the table's rows belong to the clusters of the last screen
    if stale:
        st.error(stale)
        return
    store = curation(results)
    edit(lambda: [store.name_cluster(cluster, name, who(), seen=seen_version()) for cluster, name in changed],
         "Saved " + (f"the name of cluster {changed[0][0]}" if len(changed) == 1 else f"{len(changed)} names"))


def choose_images(results) -> np.ndarray:
    """Images to edit: the Embedding page's lasso selection, or ids / #indices typed in."""
    selected = selection(results)
    source = st.radio("Images", [f"Embedding selection ({len(selected)})", "Type ids"], horizontal=True,
                      key="edit_source")
    if source.startswith("Embedding"):
        return selected
    text = st.text_area("Image ids or #indices, separated by spaces, commas or new lines", key="edit_ids")
    ids = {str(image_id): i for i, image_id in enumerate(results.images.ids)}
    chosen, unknown = [], []
    for token in text.replace(",", " ").split():
        number = image_number(token, len(results.images)) if token.startswith("#") else None
        if token in ids:
            chosen.append(ids[token])
        elif number is not None:
            chosen.append(number)
        else:
            unknown.append(token)
    if unknown:
        listed = markdown_text(", ".join(token[:40] for token in unknown[:10]))
        st.warning(f"Unknown: {listed}{' …' if len(unknown) > 10 else ''}")
    return np.unique(np.asarray(chosen, dtype=np.int64))


def edit_images(results, state) -> None:
    chosen = choose_images(results)
    if len(chosen):
        with st.expander(f"{len(chosen):,} images chosen", expanded=len(chosen) <= 24):
            labels = state.labels()  # (N,): built once, not once per thumbnail
            gallery(results, chosen, "edit_gallery", lambda i: str(labels[i]), page_size=48)
    action = st.segmented_control("Action", ACTIONS, default=ACTIONS[0], key="edit_action") or ACTIONS[0]
    store = curation(results)
    with st.form("edit", border=False):
        if action == "Set label":
            known = sorted(set(state.names.values()) | set(state.overrides.values()) | set(results.class_names))
            label = st.selectbox("Label", known, index=None, accept_new_options=True, key="edit_label",
                                 placeholder="Pick or type a label")
        elif action == "Move to cluster":
            target = cluster_box(st, "Cluster", cluster_options(state), state, "move_target")
        apply = st.form_submit_button(f"Apply to {len(chosen):,} images", disabled=not len(chosen), type="primary")
    if not apply:
        return
    if action == "Set label" and not label:
        st.warning("Choose or type a label first.")
        return
    if action == "Move to cluster" and (stale := clusters_changed(results, state)):
        st.error(stale)  # the picked cluster may have fallen back to another one
        return
    changes = {"Set label": lambda: store.relabel(chosen, label, who()),
               "Move to cluster": lambda: store.move(chosen, int(target), who(), seen=seen_version()),
               "Clear label override": lambda: store.clear_label(chosen, who())}
    edit(changes.get(action, lambda: store.mark_outliers(chosen, action == "Mark as outlier", who())),
         f"{action}: {len(chosen):,} images")


def history(results) -> None:
    store = curation(results)
    edits = store.history(limit=30)
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    left.subheader("History")
    if right.button("Undo my last edit", icon=":material/undo:", disabled=not edits, shortcut="ctrl+z",
                    help="Ctrl+Z"):
        undone = store.undo(who())
        st.toast(f"Undone: {undone['kind']} #{undone['id']}" if undone else "Nothing of yours to undo")
        st.rerun()
    if not edits:
        st.caption("No edits yet.")
        return
    live = [e for e in edits if not e["undone"]]
    with st.form("undo_one", border=False):
        pick, go = st.columns([3, 1], vertical_alignment="bottom")
        chosen = pick.selectbox("Or undo any edit (later edits stay)", [e["id"] for e in live],  # newest first:
                                key=f"undo_edit_{live[0]['id'] if live else 0}",  # a new edit starts it anew
                                format_func=lambda i: next(f"#{e['id']} {e['kind']} by {e['who']}: {describe(e['payload'])}"
                                                           for e in live if e["id"] == i))
        if go.form_submit_button("Undo this edit", icon=":material/undo:", disabled=not live):
            edit(lambda: store.undo(edit=int(chosen)), f"Undone: edit #{chosen}")
    st.dataframe(pd.DataFrame([{
        "#": e["id"], "when": datetime.fromtimestamp(e["at"]).strftime("%Y-%m-%d %H:%M:%S"), "who": e["who"],
        "edit": e["kind"], "details": describe(e["payload"]), "undone": bool(e["undone"])} for e in edits]),
        hide_index=True, width="stretch")


def describe(payload: dict) -> str:
    """An edit's payload in plain words: ``1 image`` / ``N images``, the distinct values of an array
    (the first few, then how many more), the other values as they are."""
    parts = []
    for key, value in payload.items():
        if key == "images":
            parts.append(f"{len(value):,} image{'' if len(value) == 1 else 's'}")
        elif isinstance(value, (list, tuple, np.ndarray)):
            distinct = np.unique(np.asarray(value)).tolist()
            more = f" and {len(distinct) - SHOWN_VALUES:,} more" if len(distinct) > SHOWN_VALUES else ""
            parts.append(f"{key}: {', '.join(map(str, distinct[:SHOWN_VALUES]))}{more}")
        else:
            parts.append(f"{key}: {value}")
    return ", ".join(parts)


def exports(results, state) -> None:
    """The curated table and its exports. A download whose file can fail to build (Label Studio,
    the ImageFolder .zip) is built on a click first, so that its error shows on the page; the CSV
    and JSON are built when their button is clicked (a table always converts)."""
    doubt = review(results, state).likely_wrong if results.neighbors is not None else None
    table = export.CuratedRows(results.images, results.probs, state, likely_wrong=doubt)  # built as it is written
    st.dataframe(table.rows(0, 200), hide_index=True, width="stretch", height=240)
    st.caption(f"Curated label = the image's own label, else its cluster's name, else “{cluster_label(0)}”. "
               f"{len(table):,} rows; {len(state.outliers):,} outliers, {len(state.reviewed):,} "
               "reviewed. *likely_wrong*: how much the image's neighbours vote against its cluster (0 to 1; the "
               "Review page's order).")
    twins, unreadable = export.duplicates_by_twin(results.images)
    copies = sum(len(paths) for paths in twins.values())
    if copies:
        st.caption(f"{copies:,} files of the source are exact duplicates of another, skipped by the training: the "
                   "table and its files have a row for the image they copy; the ImageFolder writes each copy beside "
                   "it, with its label.")
    left_out_notice(unreadable, "Every export")
    folder = workspace().home / "exports" / results.dir.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cols = st.columns(2)
    cols[0].download_button("CSV", lambda: written(table, folder / f"{stamp}-labels.csv", export.export_csv),
                            f"{results.dir.name}-labels.csv", "text/csv", icon=":material/download:", key="export_csv")
    cols[1].download_button("JSON", lambda: written(table, folder / f"{stamp}-labels.json", export.export_json),
                            f"{results.dir.name}-labels.json", "application/json", icon=":material/download:",
                            key="export_json")
    label_studio_export(results, table, folder / f"{stamp}-label-studio.json")
    image_folder_export(results, table, folder / f"{stamp}-imagefolder")


def left_out_notice(left_out, export_name: str) -> None:
    """Name the files of the source an export holds none of, with why (a warning and a list)."""
    if not left_out:
        return
    st.warning(f"{export_name} leaves out {len(left_out):,} file{'s' if len(left_out) > 1 else ''} of the source "
               "that the training skipped:")
    st.dataframe(pd.DataFrame([{"file": o.path, "why": o.reason} for o in left_out]), hide_index=True,
                 width="stretch", height=min(38 + 35 * len(left_out), 240))


def written(table: export.CuratedRows, path, writer) -> bytes:
    """Write ``table`` to ``path`` with ``writer`` (the server keeps a copy) and return the file's bytes."""
    writer(table, path)
    return path.read_bytes()


def progress_bar(what: str):
    """A progress bar and the ``on_progress(done, total)`` that moves it, for an export of ``what``."""
    bar = st.progress(0.0, text=f"Writing {what}…")
    return lambda done, total: bar.progress(done / max(total, 1), text=f"Writing {what}: {done:,} of {total:,} images")


def label_studio_export(results, table: export.CuratedRows, path) -> None:
    """Label Studio tasks, their images at an URL prefix (or at their paths on this server).

    Without file paths (bundled datasets) the images exist as files only in an ImageFolder export,
    so the prefix is that folder's URL; without a prefix either, there is nothing to point at.
    """
    missing = sum(1 for file in results.images.paths if not file)
    has_files = missing == 0
    with st.container(border=True):
        st.markdown("**Label Studio predictions** — one task per image, the curated label as a pre-annotation")
        prefix = st.text_input(
            "Image URL prefix for Label Studio", key="ls_prefix", placeholder="http://localhost:8081/",
            help="Each task's image is this prefix + the image's URL-quoted path in the served folder. E.g. "
                 "`http://localhost:8081/` for a static file server over the image folder "
                 "(`python -m http.server 8081 --directory <folder>`), or Label Studio's local-files URL "
                 "`/data/local-files/?d=<folder>/`.").strip()
        if not has_files and not prefix:
            st.warning(f"{missing:,} images have no file on the server (a bundled dataset lives in the run's arrays), "
                       "so Label Studio has nothing to load. Write them first with the ImageFolder export below "
                       "(tick Include outliers: every image gets a task), serve that folder, and give its URL above.")
        elif not has_files:
            st.caption("Images are looked up in a served ImageFolder export of this curation with outliers included: "
                       "write it (or its .zip) after your last edit, the folders follow the labels.")
        elif not prefix:
            st.info("Without a prefix each task's image is the file's path on this server: Label Studio loads "
                    "them only if it can reach that path. Give the URL the image folder is served at instead.")
        if not st.button("Prepare Label Studio file", key="export_ls_prepare", icon=":material/build:",
                         disabled=not has_files and not prefix):
            return
        try:
            data = written(table, path, lambda rows, out: export.export_label_studio(
                rows, out, prefix or None, serves_image_folder=not has_files,
                on_progress=progress_bar("Label Studio tasks")))
        except (ValueError, OSError) as error:
            st.error(f"Label Studio export failed: {markdown_text(error)}")
            return
        st.download_button("Label Studio predictions", data, f"{results.dir.name}-label-studio.json",
                           "application/json", icon=":material/download:", key="export_ls", on_click="ignore")


def image_folder_export(results, table: export.CuratedRows, target) -> None:
    """One folder per curated label: written on the server at ``target``, or built as a .zip to download."""
    with st.form("imagefolder", border=True):
        st.markdown("**ImageFolder** — one folder per curated label, written on the server or downloaded as a .zip")
        mode = st.radio("Files", ["copy", "symlink"], horizontal=True, key="imagefolder_mode",
                        help="On the server, symlink: links to the source files (no copy); bundled datasets are "
                             "written as PNG. The .zip always holds the images themselves.")
        outliers = st.checkbox("Include outliers", key="imagefolder_outliers")
        write = st.form_submit_button("Write ImageFolder", icon=":material/folder_copy:")
        build_zip = st.form_submit_button("Build .zip", icon=":material/folder_zip:",
                                          help="Built in memory: for a large run, write the folder instead")
    try:
        if write:
            done = export.export_image_folder(table, results.images, target, mode, outliers,
                                              on_progress=progress_bar("the ImageFolder"))
            copies = (f", {done.duplicates:,} of them duplicates the training skipped, each beside its twin with "
                      "its label" if done.duplicates else "")
            st.success(f"Wrote {done.written:,} images in {len(done.counts)} folders to `{target}`{copies}")
            left_out_notice(done.left_out, "This folder")
        if build_zip:
            data = export.image_folder_zip(table, results.images, outliers, workdir=target.parent)
            st.download_button("ImageFolder .zip", data, f"{results.dir.name}-imagefolder.zip", "application/zip",
                               icon=":material/download:", key="export_zip", on_click="ignore")
    except (ValueError, OSError) as error:
        st.error(f"ImageFolder export failed: {markdown_text(error)}")


def main() -> None:
    results = require_results(("probs",))
    state = curated(results)
    detail_view(results, "curate_export")
    st.title("Curate & export")
    st.caption(f"Editing as **{markdown_text(who())}** (set your name in the sidebar). Every edit is saved at once "
               "and can be undone.")
    tab_names, tab_images, tab_history, tab_export = st.tabs(  # the tab shown is in the URL: a link may name it
        ["Name clusters", EDIT_IMAGES_TAB, "History", "Export"], key=TAB_PARAM, bind="query-params")
    with tab_names:
        name_clusters(results, state)
    with tab_images:
        edit_images(results, state)
    with tab_history:
        history(results)
    with tab_export:
        exports(results, state)


through_navigation()
main()
