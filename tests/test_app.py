"""Every page of the app, headless (``streamlit.testing.v1.AppTest``), on a finished digits run that
the fixture really trains, on a copy of it without labels, and with no run at all."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from streamlit.testing.v1 import AppTest

from scan_core.data.artifacts import load_json, save_json
from scan_core.data.rundir import process_start
from scan_core.explore import jobs
from scan_core.explore.curation import Curation
from scan_core.explore.workspace import Workspace
from ui.keys import DETAIL

from apptest import APP, PAGES, app, button, metric, plotly_specs, result_probs, texts

TITLES = {"embedding": "Embedding", "clusters": "Clusters", "neighbours": "Neighbours", "evaluation": "Evaluation",
          "review": "Review", "curate_export": "Curate & export", "data_training": "Data & training"}


@pytest.mark.parametrize("run", ["digits", "suggested", "refined"])
def test_every_page_opens_after_each_kind_of_job(jobs_home, monkeypatch, run):
    """A trained, a K-suggested and a refined run: every page draws with its own title and no error,
    and Data & training can still start a new run (a refine once left it a traceback)."""
    for page in PAGES:
        at = app(jobs_home, monkeypatch, run=run, page=page)
        assert at.title[0].value == TITLES[page], (run, page)
        assert not at.error, (run, page, [e.value for e in at.error])
    assert button(at, "Start training") and "Expected training time" in texts(at)
    assert f" {run} — finished" in texts(at)  # the progress card of the run
    evidence = jobs_home / "runs" / run / "suggested_k.json"
    if evidence.exists():  # the card names the suggested K, and Why K marks it and the next best
        suggestion = load_json(evidence)
        k, ks, separation = suggestion["k"], suggestion["ks"], suggestion["separation"]
        assert f"K = **{k}**, suggested from the run's features" in texts(at)
        assert 8 <= k <= 13  # digits' 10 classes; measured 12 on the digits preset's manifold
        at = app(jobs_home, monkeypatch, run=run, page="clusters")
        runner_up = ks[sorted(range(len(ks)), key=lambda i: -separation[i])[1]]
        bars = next(t for spec in plotly_specs(at) for t in spec["data"] if t.get("type") == "bar")
        assert np.allclose(decoded(bars["y"]), separation) and k == ks[separation.index(max(separation))]
        assert bars["marker"]["color"] == ["#E45756" if kk == k else "#F58518" if kk == runner_up else "#9ECAE9"
                                           for kk in ks]
        assert f"next best K = {runner_up}" in texts(at)


def test_evaluation_matches_the_run_metrics(home, monkeypatch):
    at = app(home, monkeypatch, page="evaluation")
    metrics = load_json(home / "runs" / "digits" / "metrics.json")
    final = metrics[metrics["final"]["stage"]]
    assert metric(at, "ACC (Hungarian)") == f"{final['acc']:.3f}"
    assert metric(at, "NMI") == f"{final['nmi']:.3f}"
    assert final["acc"] >= 0.94  # the digits bench: 0.953 (bench/RESULTS.md); the SCAN heads at lr/10: 0.752


def test_pages_without_labels_say_so(home, monkeypatch):
    at = app(home, monkeypatch, run="nolabels", page="evaluation")
    assert "has no labels" in texts(at)
    for page in ("embedding", "clusters", "neighbours", "curate_export"):
        at = app(home, monkeypatch, run="nolabels", page=page)
        assert not at.error and "has no labels" not in texts(at), page


def test_no_run_yet(tmp_path, monkeypatch):
    empty = Workspace.create(tmp_path / "empty").home
    for page in PAGES[:-1]:
        assert "No run yet" in texts(app(empty, monkeypatch, run=None, page=page))
    at = app(empty, monkeypatch, run=None)
    assert any(b.label == "Run the digits demo" for b in at.button)


def test_a_running_job_is_reported(home, monkeypatch, tmp_path):
    running = home / "runs" / "still-running"
    running.mkdir()
    shutil.copy(home / "runs" / "digits" / "config.json", running / "config.json")
    save_json(running / "status.json", {"state": "running", "stage": "pretext", "completed": ["images"],
                                        "pid": os.getpid(), "pid_start": process_start(os.getpid()), "error": None})
    try:
        at = app(home, monkeypatch, run="still-running", page="clusters")
        assert "**still-running** is still training (stage: pretext)" in texts(at)
        at = app(home, monkeypatch, run="digits", page="clusters")  # another run's pages: the sidebar says it
        sidebar = [c.value for c in at.sidebar.caption]
        assert "digits · finished" in sidebar  # Markdown-escaped below
        assert ":material/model_training: still\\-running · running (pretext)" in sidebar
    finally:
        shutil.rmtree(running)


def test_the_chosen_run_survives_page_switches(home, monkeypatch):
    at = app(home, monkeypatch, run="nolabels")
    assert at.selectbox(key="run_picker").value == "nolabels"
    for page in ("clusters", "evaluation"):
        at.switch_page(f"pages/{page}.py")
        at.run()
        assert at.query_params["run"] in ("nolabels", ["nolabels"])
    assert "**nolabels** has no labels" in texts(at)


def test_naming_a_cluster_on_the_clusters_page_is_stored(own_home, monkeypatch):
    at = app(own_home, monkeypatch, page="clusters")
    at.text_input(key="name_0").set_value("zeros")
    next(b for b in at.button if b.label == "Save name").click()
    at.run()
    assert not at.exception
    run_dir = own_home / "runs" / "digits"
    state = Curation(run_dir, result_probs(run_dir).argmax(1)).state()
    assert state.names[0] == "zeros"
    assert "0 · zeros" in list(at.selectbox(key="cluster").options)


def test_a_name_typed_in_the_name_clusters_table_is_saved_without_a_button(own_home, monkeypatch):
    """A name typed into the Curate page's table is in the curation log after that one rerun (the
    user may leave the page next), for the cluster of the row it was typed in; the prototypes are
    drawn at 80 px."""
    import base64
    import io

    from PIL import Image
    at = app(own_home, monkeypatch, page="curate_export")
    editor = at.data_editor[0]
    table = editor.value
    row = int(np.flatnonzero(table["cluster"].to_numpy() == 3)[0])
    assert Image.open(io.BytesIO(base64.b64decode(table["p0"][row].split(",", 1)[1]))).size == (80, 80)
    at.session_state[editor.key] = {"edited_rows": {row: {"name": "  threes "}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.exception
    run_dir = own_home / "runs" / "digits"
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    assert store.state().names == {3: "threes"}
    assert [(e["kind"], e["payload"]["cluster"], e["payload"]["name"]) for e in store.history()] == [
        ("name_cluster", 3, "threes")]
    assert not [b for b in at.button if b.label.startswith("Save names")]


def test_relabel_typed_ids_and_undo(own_home, monkeypatch):
    at = app(own_home, monkeypatch, page="curate_export")
    at.session_state["who"] = "tester"
    at.radio(key="edit_source").set_value("Type ids")
    at.run()
    at.text_area(key="edit_ids").set_value("#3 #5 #8")
    at.run()
    at.selectbox(key="edit_label").set_value("7")
    next(b for b in at.button if b.label.startswith("Apply to 3")).click()
    at.run()
    assert not at.exception
    run_dir = own_home / "runs" / "digits"
    base = result_probs(run_dir).argmax(1)
    curation = Curation(run_dir, base)
    assert {3: "7", 5: "7", 8: "7"}.items() <= curation.state().overrides.items()
    assert curation.history(1)[0]["who"] == "tester"
    next(b for b in at.button if b.label == "Undo my last edit").click()
    at.run()
    assert 3 not in curation.state().overrides


def test_split_and_merge_from_the_clusters_page(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    curation = Curation(run_dir, result_probs(run_dir).argmax(1))
    before = curation.state()
    at = app(own_home, monkeypatch, page="clusters")
    at.selectbox(key="cluster").set_value(1)
    at.run()
    button(at, "Split in two…").click().run()
    assert curation.state().version == before.version  # asked, not done: a split is confirmed first
    assert "Confirm split" in [b.label for b in at.button]
    button(at, "Confirm split").click().run()
    assert not at.exception
    after = curation.state()
    new = after.num_cluster_ids - 1
    assert new == before.num_cluster_ids == 10 and (after.clusters == new).sum() > 0
    assert set(np.flatnonzero(after.clusters == new)) <= set(np.flatnonzero(before.clusters == 1))
    assert [t.value for t in at.toast][-1].endswith("moved to the new cluster 10; showing it")
    assert at.selectbox(key="cluster").value == new  # the new cluster is the one shown
    at.selectbox(key=f"merge_target_{new}").set_value(1).run()
    button(at, "Merge…").click().run()
    button(at, "Confirm merge").click().run()
    assert not at.exception
    assert (curation.state().clusters == before.clusters).all()
    # the user's own merge: no word of another session, and the cluster it went into is shown
    assert "no longer exists" not in texts(at) and at.selectbox(key="cluster").value == 1


def merged_away_in_another_tab(run_dir: Path) -> Curation:
    """What tab A does while tab B still shows cluster 8: merge 8 into 9."""
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    store.merge(8, 9, "alice")
    return store


def assert_only_alices_merge(store: Curation, at: AppTest) -> None:
    assert [(e["who"], e["kind"]) for e in store.history()] == [("alice", "merge")]
    assert "cluster 8 no longer exists" in " ".join(e.value for e in at.error)


def test_a_stale_tab_cannot_split_or_merge_another_cluster(own_home, monkeypatch):
    at = app(own_home, monkeypatch, page="clusters")  # tab B, on cluster 8
    at.selectbox(key="cluster").set_value(8).run()
    store = merged_away_in_another_tab(own_home / "runs" / "digits")
    sizes = store.state().cluster_sizes()
    button(at, "Split in two…").click().run()  # the page now falls back to cluster 0: the click must not
    assert not at.exception and "Confirm split" not in [b.label for b in at.button]
    assert_only_alices_merge(store, at)
    assert "Cluster 8 no longer exists" in " ".join(w.value for w in at.warning)
    assert (store.state().cluster_sizes() == sizes).all()


def test_a_confirmation_asked_before_another_tab_changed_the_cluster_is_refused(own_home, monkeypatch):
    at = app(own_home, monkeypatch, page="clusters")
    at.selectbox(key="cluster").set_value(8).run()
    button(at, "Split in two…").click().run()
    store = merged_away_in_another_tab(own_home / "runs" / "digits")
    button(at, "Confirm split").click().run()
    assert not at.exception
    assert_only_alices_merge(store, at)


def test_a_stale_move_target_is_refused(own_home, monkeypatch):
    at = app(own_home, monkeypatch, page="curate_export")
    at.radio(key="edit_source").set_value("Type ids").run()
    at.text_area(key="edit_ids").set_value("#3 #5").run()
    at.segmented_control(key="edit_action").set_value("Move to cluster").run()
    at.selectbox(key="move_target").set_value(8)
    store = merged_away_in_another_tab(own_home / "runs" / "digits")
    button(at, "Apply to 2 images").click().run()
    assert not at.exception
    assert_only_alices_merge(store, at)


def test_any_edit_of_the_history_can_be_undone(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    first = store.name_cluster(0, "zeros", "tester")
    store.move([3], 0, "tester")
    at = app(own_home, monkeypatch, page="curate_export")
    undo = next(box for box in at.selectbox if box.label.startswith("Or undo any edit"))
    undo.set_value(first)
    button(at, "Undo this edit").click().run()
    assert not at.exception
    state = store.state()
    assert 0 not in state.names and state.clusters[3] == 0  # the later move stays


def test_relabel_this_selection_opens_the_edit_images_tab(home, monkeypatch):
    embedding = app(home, monkeypatch, page="embedding")
    embedding.session_state["embedding_selection"] = {"selected": [1, 2, 3]}
    embedding.run()
    link = next(p for p in embedding.get("page_link") if p.proto.label == "Relabel this selection on Curate & export")
    assert "tab=Edit" in link.proto.query_string and "run=digits" in link.proto.query_string
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"run": "digits", "tab": "Edit images"})
    at.run()
    at.switch_page("pages/curate_export.py")
    at.query_params["tab"] = "Edit images"
    at.run()
    assert not at.exception and at.session_state["tab"] == "Edit images"


def test_the_maps_caption_says_what_it_is_a_umap_of(home, monkeypatch):
    at = app(home, monkeypatch, page="embedding")  # the digits preset: heads on the 10-d manifold of the HOG
    assert "UMAP of the 10-d manifold of the images' HOG" in texts(at) and "pretext" not in texts(at)


def test_the_history_says_its_edits_in_plain_words_and_offers_the_newest_to_undo(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    store.move([3], 0, "tester")
    at = app(own_home, monkeypatch, page="curate_export")
    undo = next(box for box in at.selectbox if box.label.startswith("Or undo any edit"))
    undo.set_value(undo.options[0]).run()  # the user looks at the box; then a new edit comes
    clusters = store.state().clusters
    images = [int(np.flatnonzero(clusters == c)[k]) for c, k in ((2, 0), (3, 0), (8, 0), (6, 0), (2, 1), (9, 0), (1, 0))]
    accepted = store.accept(images, [2, 3, 8, 6, 2, 9, 1], "tester")
    at.run()
    undo = next(box for box in at.selectbox if box.label.startswith("Or undo any edit"))
    assert undo.value == accepted  # the newest edit first
    details = next(d.value for d in at.dataframe if "details" in d.value.columns)
    assert details["details"].tolist() == ["7 images, clusters: 1, 2, 3, 6, 8 and 1 more", "cluster: 0, 1 image"]


def test_data_page_previews_digits_and_refuses_a_second_training(home, monkeypatch):
    at = app(home, monkeypatch)
    assert metric(at, "Images") == "1,797" and metric(at, "Labels") == "10 classes"
    assert at.number_input[0].value == 10  # K defaults to the number of classes
    ws = Workspace.create(home)
    with jobs._training_lock(ws):  # someone else is training
        next(b for b in at.button if b.label == "Start training").click()
        at.run()
    assert "Not started: a training is already running" in texts(at)


def shapes_zip() -> bytes:
    """A zip of 60 generated 32x32 colour images in three label folders: disc, square, stripes."""
    import io
    import zipfile

    from PIL import Image, ImageDraw
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for shape in ("disc", "square", "stripes"):
            for i in range(20):
                image = Image.new("RGB", (32, 32), tuple(int(v) for v in rng.integers(0, 80, 3)))
                draw, colour = ImageDraw.Draw(image), tuple(int(v) for v in rng.integers(150, 256, 3))
                a, b = int(rng.integers(4, 10)), int(rng.integers(22, 28))
                if shape == "disc":
                    draw.ellipse((a, a, b, b), fill=colour)
                elif shape == "square":
                    draw.rectangle((a, a, b, b), fill=colour)
                else:
                    for x in range(a % 4, 32, 6):
                        draw.rectangle((x, 0, x + 2, 31), fill=colour)
                png = io.BytesIO()
                image.save(png, format="PNG")
                archive.writestr(f"shapes/{shape}/{i:02d}.png", png.getvalue())
    return buffer.getvalue()


def test_an_uploaded_zip_is_previewed_and_trained(tmp_path, monkeypatch, wait_for):
    ws = Workspace.create(tmp_path / "home")
    at = app(ws.home, monkeypatch, run=None)
    at.segmented_control(key="source_kind").set_value("Upload a zip").run()
    at.file_uploader(key="upload").set_value(("broken.zip", b"not a zip at all", "application/zip")).run()
    assert not at.exception
    assert "broken" in " ".join(e.value for e in at.error) and "zip" in " ".join(e.value for e in at.error)
    data = shapes_zip()
    at.file_uploader(key="upload").set_value(("shapes.zip", data, "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert metric(at, "Images") == "60" and metric(at, "Labels") == "3 classes"
    assert metric(at, "Channels") == "colour"
    assert at.number_input[0].value == 3  # K defaults to the three label folders
    saved = sorted(ws.uploads.glob("shapes-*.zip"))
    assert len(saved) == 1 and saved[0].read_bytes() == data
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_dir, = ws.runs.iterdir()  # the run the page launched
    wait_for(lambda: jobs.job_state(ws, run_dir).state in ("finished", "failed"), timeout=300)
    assert jobs.job_state(ws, run_dir).state == "finished", jobs.last_log_line(run_dir)
    assert load_json(run_dir / "config.json")["dataset"] == str(saved[0])
    assert load_json(run_dir / "metrics.json")["images"]["count"] == 60


def test_hover_sprite_sheet_holds_every_thumbnail_at_its_tile():
    import base64
    import io

    from PIL import Image

    from ui.map_events import sprite_sheet
    thumbnails = np.random.default_rng(0).integers(0, 256, (11, 5, 5, 3), dtype=np.uint8)
    uri, columns, rows = sprite_sheet(thumbnails)
    assert (columns, rows) == (4, 3)
    sheet = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert sheet.shape == (15, 20, 3)
    for i, thumbnail in enumerate(thumbnails):
        row, col = divmod(i, columns)
        assert np.array_equal(sheet[row * 5:(row + 1) * 5, col * 5:(col + 1) * 5], thumbnail), i


def decode_sheet(uri: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_an_on_demand_hover_sheet_holds_the_images_nearest_on_the_map(home):
    from scan_core.explore.results import RunResults
    from ui.map_events import _sheet, nearest_on_map
    results = RunResults.load(home / "runs" / "digits")
    ids = nearest_on_map(results, 42, count=20)
    projection = np.asarray(results.projection)
    distance = np.linalg.norm(projection - projection[42], axis=1)
    assert ids[0] == 42 and len(set(ids.tolist())) == 20
    assert np.allclose(np.sort(distance[ids]), np.sort(distance)[:20])  # the 20 nearest, whatever the ties
    sheet = _sheet(results.thumbnails(), ids)
    assert sheet["ids"] == ids.tolist() and (sheet["columns"], sheet["rows"]) == (5, 4)
    pixels = decode_sheet(sheet["sprite"])
    side = results.thumbnails().shape[1]
    for k, index in enumerate(ids):  # tile k of the sheet is image ids[k]
        row, col = divmod(k, sheet["columns"])
        assert np.array_equal(pixels[row * side:(row + 1) * side, col * side:(col + 1) * side],
                              results.thumbnails()[index][..., 0]), k
    with pytest.raises(ValueError, match="not in this run"):
        nearest_on_map(results, len(results.images))


def test_the_hover_sheet_limit_comes_from_the_environment(monkeypatch):
    from ui.map_events import SHEET_PIXELS, SHEET_PIXELS_ENV, whole_sheet_limit
    monkeypatch.delenv(SHEET_PIXELS_ENV, raising=False)
    assert whole_sheet_limit() == SHEET_PIXELS
    monkeypatch.setenv(SHEET_PIXELS_ENV, "0")
    assert whole_sheet_limit() == 0
    monkeypatch.setenv(SHEET_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=f"{SHEET_PIXELS_ENV} must be a whole number of pixels, not 'lots'"):
        whole_sheet_limit()


def brute_force_places(xy: np.ndarray, low: np.ndarray, high: np.ndarray, grid: int) -> dict[tuple[int, int], int]:
    """Cell -> the image nearest its centre among those inside it, cell by cell, point by point."""
    step = (high - low) / grid
    places = {}
    for row in range(grid):
        for column in range(grid):
            centre = low + (np.array([row, column]) + 0.5) * step
            best, nearest = None, np.inf
            for i, point in enumerate(xy):
                if not np.all((point >= low) & (point <= high)):
                    continue
                cell = np.minimum(((point - low) // step).astype(int), grid - 1)
                distance = np.linalg.norm((point - centre) / step)
                if tuple(cell) == (row, column) and distance < nearest:
                    best, nearest = i, distance
            if best is not None:
                places[(row, column)] = best
    return places


def test_the_thumbnails_view_draws_the_image_nearest_each_cells_centre():
    from ui.map_figure import thumbnail_places
    xy = np.random.default_rng(0).normal(size=(400, 2)).astype(np.float32)
    keep = np.flatnonzero(np.random.default_rng(1).random(400) < 0.8)
    for zoom in (None, (-1.0, 1.5, 1.2, -0.5)):  # the whole extent; a zoom (ranges in either order)
        low = xy[keep].min(0) if zoom is None else np.array([-1.0, -0.5])
        high = xy[keep].max(0) if zoom is None else np.array([1.5, 1.2])
        expected = brute_force_places(xy[keep], low, high, 6)
        places = thumbnail_places(xy, keep, zoom, grid=6)
        assert sorted(index for index, _ in places) == sorted(int(keep[i]) for i in expected.values())
        for index, (x, y, width, height) in places:
            assert abs(xy[index, 0] - x) <= width / 0.92 / 2 + 1e-5 and abs(xy[index, 1] - y) <= height / 0.92 / 2 + 1e-5


def test_the_map_shows_as_density_or_as_thumbnails_that_follow_the_zoom(home, monkeypatch):
    at = app(home, monkeypatch, page="embedding")
    assert plotly_specs(at)[0]["data"][0]["type"] == "scattergl"  # 1,797 images: points
    at.segmented_control(key="map_shown_as").set_value("density").run()
    data = plotly_specs(at)[0]["data"]
    assert data[0]["type"] == "heatmap" and all(t["type"] == "scattergl" for t in data[1:])
    z = decoded(data[0]["z"])  # log(1 + count) per bin, empty bins not drawn
    assert round(float(np.expm1(z[np.isfinite(z)]).sum())) == 1797
    at.segmented_control(key="map_shown_as").set_value("thumbnails").run()
    images = plotly_specs(at)[0]["layout"]["images"]
    projection = np.load(home / "runs" / "digits" / "projection.npy")
    everywhere = brute_force_places(projection, projection.min(0), projection.max(0), 12)
    assert len(images) == len(everywhere) and all(i["source"].startswith("data:image/png;base64,") for i in images)
    x0, x1 = np.quantile(projection[:, 0], [0.4, 0.6])
    y0, y1 = np.quantile(projection[:, 1], [0.4, 0.6])
    at.session_state["embedding_selection"] = {"view": [float(x0), float(x1), float(y0), float(y1)]}  # a zoom in
    at.run()
    layout = plotly_specs(at)[0]["layout"]
    zoomed = layout["images"]
    assert not at.exception and all(x0 <= i["x"] <= x1 and y0 <= i["y"] <= y1 for i in zoomed)
    assert len(zoomed) == len(brute_force_places(projection, np.array([x0, y0]), np.array([x1, y1]), 12))
    # redrawn where the user left it (the browser draws a changed figure anew, at its own ranges)
    assert np.allclose(layout["xaxis"]["range"], [x0, x1]) and np.allclose(layout["yaxis"]["range"], [y0, y1])
    at.session_state["embedding_selection"] = {"view": []}  # zoomed back out: the whole map again
    at.run()
    layout = plotly_specs(at)[0]["layout"]
    assert len(layout["images"]) == len(everywhere) and "range" not in layout["xaxis"]


def decoded(array) -> np.ndarray:
    """A numeric array of a plotly spec: binary (``bdata``, base64) or a plain list."""
    import base64
    if isinstance(array, dict):
        values = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
        shape = [int(side) for side in str(array.get("shape", len(values))).split(",")]
        return values.reshape(shape)
    return np.asarray(array, dtype=np.float64)


def drawn_images(spec: dict) -> np.ndarray:
    """The image indices drawn by the map's point traces (``customdata[0]``)."""
    return np.concatenate([decoded(t["customdata"]).reshape(-1, 3)[:, 0].astype(np.int64)
                           for t in spec["data"] if t["type"] == "scattergl" and t["name"] not in ("kept selection", "found")])


def test_a_big_map_is_drawn_at_a_level_of_detail_and_a_region_selects_every_image_in_it(home, monkeypatch):
    """Past SCAN_EXPLORER_MAP_POINTS points the map draws one point per grid cell over the ranges on
    screen, and a box or lasso comes back as a region that selects every image in it (brute force here)."""
    monkeypatch.setenv("SCAN_EXPLORER_MAP_POINTS", "300")
    projection = np.load(home / "runs" / "digits" / "projection.npy")
    at = app(home, monkeypatch, page="embedding")
    spec = plotly_specs(at)[0]
    drawn = drawn_images(spec)
    assert spec["layout"]["meta"] == {"regions": True} and 50 < len(drawn) <= 300 and len(set(drawn)) == len(drawn)
    x0, x1 = np.quantile(projection[:, 0], [0.3, 0.7])
    y0, y1 = np.quantile(projection[:, 1], [0.3, 0.7])
    box = {"kind": "box", "xs": [float(x1), float(x0)], "ys": [float(y0), float(y1)], "hidden": []}
    at.session_state["embedding_selection"] = {"region": box}
    at.run()
    inside = [i for i in range(1797) if x0 <= projection[i, 0] <= x1 and y0 <= projection[i, 1] <= y1]
    assert not at.exception and f"Selection · {len(inside):,} images" in [s.value for s in at.subheader]
    assert at.session_state["selection"]["ids"].tolist() == inside
    # a legend group hidden in the browser is left out of the region
    clusters = result_probs(home / "runs" / "digits").argmax(1)
    name = next(t["name"] for t in spec["data"] if t["name"] == f"cluster {clusters[inside[0]]}")
    at.session_state["embedding_selection"] = {"region": {**box, "hidden": [name]}}
    at.run()
    left = [i for i in inside if clusters[i] != clusters[inside[0]]]
    assert at.session_state["selection"]["ids"].tolist() == left
    # a lasso: every image inside its polygon (a triangle here, tested by barycentric coordinates)
    corners = np.array([[x0, y0], [x1, y0], [(x0 + x1) / 2, y1]], dtype=np.float64)
    weights = np.linalg.solve(np.array([corners[1] - corners[0], corners[2] - corners[0]]).T,
                              (projection.astype(np.float64) - corners[0]).T).T
    triangle = np.flatnonzero((weights[:, 0] > 0) & (weights[:, 1] > 0) & (weights.sum(1) < 1)).tolist()
    lasso = {"kind": "lasso", "xs": corners[:, 0].tolist(), "ys": corners[:, 1].tolist(), "hidden": []}
    at.session_state["embedding_selection"] = {"region": lasso}
    at.run()
    assert len(triangle) > 20 and at.session_state["selection"]["ids"].tolist() == triangle
    at.session_state["embedding_selection"] = {"region": {**box, "hidden": [name]}}
    at.run()
    # a zoom draws the points near its ranges again, all of them once they are few enough
    at.session_state["embedding_selection"] = {"view": [float(x0), float(x1), float(y0), float(y1)]}
    at.run()
    spec = plotly_specs(at)[0]
    near = [i for i in range(1797) if x0 - (x1 - x0) * 0.1 <= projection[i, 0] <= x1 + (x1 - x0) * 0.1
            and y0 - (y1 - y0) * 0.1 <= projection[i, 1] <= y1 + (y1 - y0) * 0.1]
    zoomed = drawn_images(spec)
    assert set(zoomed) <= set(near) and (len(near) > 300 or sorted(zoomed) == near)
    assert np.allclose(spec["layout"]["xaxis"]["range"], [x0, x1])
    for malformed in ({"kind": "lasso", "xs": [1, 2], "ys": [1, 2]}, {"kind": "box", "xs": ["a", 1], "ys": [0, 1]}, "x"):
        at.session_state["embedding_selection"] = {"region": malformed}
        at.run()
        assert not at.exception and at.session_state["selection"]["ids"].tolist() == left


def test_a_map_selection_fills_the_gallery_and_the_curate_page_for_its_run_only(home, monkeypatch):
    run_dir = home / "runs" / "digits"
    picked = [5, 17, 1000]
    at = app(home, monkeypatch, page="embedding")
    assert "Selection" in [s.value for s in at.subheader]  # nothing selected yet
    at.session_state["selection"] = {"run": str(run_dir), "ids": picked}
    at.run()
    assert "Selection · 3 images" in [s.value for s in at.subheader]
    grid = next(h.proto.body for h in at.get("html") if "scan-gallery" in h.proto.body)
    assert sorted(int(a) for a in __import__("re").findall(r'alt="#(\d+)"', grid)) == picked
    at.switch_page("pages/curate_export.py")
    at.run()
    assert at.radio(key="edit_source").options[0] == "Embedding selection (3)"

    at = app(home, monkeypatch, run="nolabels", page="curate_export")  # another run: not its selection
    at.session_state["selection"] = {"run": str(run_dir), "ids": picked}
    at.run()
    assert at.radio(key="edit_source").options[0] == "Embedding selection (0)"

    at = app(home, monkeypatch, page="embedding")
    at.session_state["selection"] = {"run": str(run_dir), "ids": picked}
    at.run()
    next(b for b in at.button if b.label == "Clear selection").click().run()
    assert not at.exception and "Selection" in [s.value for s in at.subheader]
    assert list(at.session_state["selection"]["ids"]) == []


def hover_data(at: AppTest) -> dict:
    import json
    return json.loads(next(c.proto.json for c in at.get("bidi_component") if c.proto.component_name == "scan_map_hover"))


def test_hover_thumbnails_go_with_a_small_run_and_come_on_demand_for_a_big_one(home, monkeypatch):
    from scan_core.explore.results import RunResults
    from ui.map_events import nearest_on_map
    at = app(home, monkeypatch, page="embedding")
    sheet = hover_data(at)["sheet"]  # digits: 1797 x 8 x 8 pixels, one sheet of every image with the page
    assert sheet["ids"] is None and sheet["count"] == 1797 and not hover_data(at)["on_demand"]

    monkeypatch.setenv("SCAN_EXPLORER_HOVER_SHEET_PIXELS", "0")  # now digits count as big
    at = app(home, monkeypatch, page="embedding")
    assert "load on the first hover" in texts(at)
    assert hover_data(at)["on_demand"] and hover_data(at)["sheet"] is None  # nothing until a hover asks
    at.session_state["embedding_hover"] = {"wanted": 42}  # what the component sets on a hover over image 42
    at.run()
    expected = nearest_on_map(RunResults.load(home / "runs" / "digits"), 42)
    assert hover_data(at)["sheet"]["ids"] == expected.tolist() and len(expected) == 256


def test_the_map_follows_curation_edits(own_home, monkeypatch):
    import base64
    import json
    run_dir = own_home / "runs" / "digits"
    store = Curation(run_dir, result_probs(run_dir).argmax(1))

    def trace_names(at: AppTest) -> list[str]:
        spec = json.loads(at.get("plotly_chart")[0].proto.spec)
        return [trace["name"] for trace in spec["data"]]

    at = app(own_home, monkeypatch, page="embedding")
    before = next(name for name in trace_names(at) if name.split(" ")[-1] == "0")
    store.name_cluster(0, "renamed here", "tester")
    at.run()  # the same run, colouring and session: only the curated state changed
    assert "0 · renamed here" in trace_names(at) and before not in trace_names(at)
    moved = [i for i in range(20) if store.state().clusters[i] != 0][:3]
    store.move(moved, 0, "tester")
    at.run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    zeros = next(trace for trace in spec["data"] if trace["name"] == "0 · renamed here")["customdata"]
    images = np.frombuffer(base64.b64decode(zeros["bdata"]), dtype=zeros["dtype"]).reshape(-1, 3)[:, 0]
    assert set(moved) <= set(images.astype(int).tolist())


def test_malformed_map_events_are_ignored(home, monkeypatch):
    """What the browser sends is input: a selection or a hover request that is not whole numbers
    inside the run changes nothing and breaks nothing."""
    monkeypatch.setenv("SCAN_EXPLORER_HOVER_SHEET_PIXELS", "0")
    at = app(home, monkeypatch, page="embedding")
    for wanted in ("42", -1, 10**9, [1, 2], None):
        at.session_state["embedding_hover"] = {"wanted": wanted}
        at.run()
        assert not at.exception and hover_data(at)["sheet"] is None, wanted
    at.session_state["embedding_selection"] = {"selected": [-1, 5, 5, 10**6]}  # only 5 is in the run
    at.run()
    assert "Selection · 1 image" in [s.value for s in at.subheader]
    for selected in (["x"], [10**30], [[1, 2], 3]):  # not whole numbers: the selection stays
        at.session_state["embedding_selection"] = {"selected": selected}
        at.run()
        assert not at.exception and "Selection · 1 image" in [s.value for s in at.subheader], selected


EVIL = "[x](http://evil.example) ![t](http://evil.example/p.png) <b>bold</b> :red[red]"
MARKDOWN_KINDS = ("markdown", "caption", "header", "subheader", "title", "info", "warning", "error", "success", "toast")


def test_names_are_text_everywhere(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    store.name_cluster(0, EVIL, "<img src=http://evil.example/who.png>")
    first = int(np.flatnonzero(store.state().clusters == 0)[0])
    monkeypatch.setitem(__import__("os").environ, "SCAN_EXPLORER_HOVER_SHEET_PIXELS", "0")
    for page in PAGES:
        at = app(own_home, monkeypatch, page=page)
        if page == "clusters":
            at.selectbox(key="cluster").set_value(0).run()
        if page == "neighbours":
            at.query_params["image"] = str(first)
            at.run()
        rendered = [str(e.value) for kind in MARKDOWN_KINDS for e in getattr(at, kind)]
        assert not [r for r in rendered if "](http://evil" in r or "<img" in r], page   # no live link or image
        htmls = [h.proto.body for h in at.get("html")]
        assert not [h for h in htmls if "<b>bold" in h or "<img src=http" in h], page
        for spec in plotly_specs(at):
            labels = [t.get("name", "") for t in spec["data"]] + [a["text"] for a in spec["layout"].get("annotations", [])]
            labels += [str(v) for t in spec["data"] for v in (t.get("y") or []) if isinstance(v, str)]
            assert not [label for label in labels if "<b>" in label], page  # plotly would draw it bold
        if page == "clusters":
            assert any("&lt;b&gt;bold&lt;/b&gt;" in h and "[x](http://evil.example)" in h for h in htmls)
        if page == "neighbours":
            assert any("0 · [x](http://evil.example)" in h for h in htmls)


def trace_colours(at: AppTest) -> dict[str, str]:
    return {t["name"]: t["marker"]["color"] for t in plotly_specs(at)[0]["data"]}


def test_map_colours_stay_with_their_clusters(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    at = app(own_home, monkeypatch, page="embedding")
    before = trace_colours(at)
    assert list(before) == [f"cluster {c}" for c in range(10)]        # legend in cluster order, not "1, 10, 2"
    assert len(set(before.values())) == 10                              # ten different colours
    store.name_cluster(2, "twos", "tester")
    members = np.flatnonzero(store.state().clusters == 5)
    store.split(5, members[: len(members) // 2], "tester")
    at.run()
    after = trace_colours(at)
    assert after["2 · twos"] == before["cluster 2"]
    assert all(after[f"cluster {c}"] == before[f"cluster {c}"] for c in (0, 1, 3, 4, 5, 6, 7, 8, 9))
    assert after["cluster 10"] not in before.values()


def members_by_confidence(run_dir: Path, cluster: int) -> np.ndarray:
    """Cluster ``cluster``'s images, most confident first: the Clusters page's members gallery."""
    probs = result_probs(run_dir)
    members = np.flatnonzero(probs.argmax(1) == cluster)
    return members[np.argsort(-probs[members].max(1), kind="stable")]


def shown_ids(at: AppTest) -> str:
    return " ".join(h.proto.body for h in at.get("html"))


def detail_of_cluster_0(own_home, monkeypatch) -> tuple[AppTest, Path, np.ndarray, np.ndarray]:
    """The Clusters page with the detail view of cluster 0's most confident image open (a click on
    its thumbnail), as "tester"; with the run's directory, image ids and cluster 0's members."""
    run_dir = own_home / "runs" / "digits"
    members = members_by_confidence(run_dir, 0)
    at = app(own_home, monkeypatch, page="clusters")
    at.session_state["who"] = "tester"
    at.session_state["gallery_clicks"] = {"opened": {"index": int(members[0]), "gallery": "members_0"}}
    at.run()
    at.session_state["gallery_clicks"] = {}  # a click is sent once (AppTest would keep sending it)
    return at, run_dir, np.load(run_dir / "images" / "ids.npy"), members


def test_a_thumbnail_opens_its_detail_view_the_arrows_walk_its_gallery_and_edits_work_there(own_home, monkeypatch):
    at, run_dir, ids, members = detail_of_cluster_0(own_home, monkeypatch)
    assert f">{ids[members[0]]}</h3>" in shown_ids(at) and "1 of " in texts(at)
    button(at, "Next").click().run()
    assert f">{ids[members[1]]}</h3>" in shown_ids(at) and "2 of " in texts(at)
    button(at, "Previous").click().run()
    assert f">{ids[members[0]]}</h3>" in shown_ids(at)
    next(t for t in at.text_input if t.label == "Move to cluster").set_value("3")
    button(at, "Move").click().run()
    assert not at.exception
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    assert store.state().clusters[members[0]] == 3
    assert (store.history(1)[0]["kind"], store.history(1)[0]["who"]) == ("move", "tester")
    assert f">{ids[members[1]]}</h3>" in shown_ids(at)  # on to the next image


def test_the_detail_view_moves_to_a_cluster_past_nine_by_number_or_name_and_shows_names_on_keys(own_home,
                                                                                                monkeypatch):
    run_dir = own_home / "runs" / "digits"
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    two = np.flatnonzero(store.state().clusters == 2)
    assert store.split(2, two[: len(two) // 2]) == 10  # a cluster without a number key
    store.name_cluster(7, "sevens and ones")
    at, run_dir, ids, members = detail_of_cluster_0(own_home, monkeypatch)
    assert button(at, "7 · sevens and ones").proto.shortcut == "7"  # the whole name
    box = next(t for t in at.text_input if t.label == "Move to cluster")
    box.set_value("10")
    button(at, "Move").click().run()
    assert not at.exception and store.state().clusters[members[0]] == 10
    next(t for t in at.text_input if t.label == "Move to cluster").set_value("SEVENS AND ONES")
    button(at, "Move").click().run()
    assert store.state().clusters[members[1]] == 7
    next(t for t in at.text_input if t.label == "Move to cluster").set_value("42")
    button(at, "Move").click().run()
    assert any("No cluster 42" in e.value for e in at.error) and store.state().clusters[members[2]] == 0


def test_the_detail_view_accepts_with_a_and_moves_by_number_and_goes_on(own_home, monkeypatch):
    at, run_dir, ids, members = detail_of_cluster_0(own_home, monkeypatch)
    accept = button(at, "Accept its cluster")
    assert accept.proto.shortcut.lower() == "a"
    accept.click().run()
    assert f">{ids[members[1]]}</h3>" in shown_ids(at)  # on to the next image
    to_seven = button(at, "7")
    assert to_seven.proto.shortcut == "7" and button(at, "1").proto.shortcut == "1"
    assert not [b for b in at.button if b.label == "0"]  # no key moves an image to its own cluster
    to_seven.click().run()
    assert not at.exception and f">{ids[members[2]]}</h3>" in shown_ids(at)
    state = Curation(run_dir, result_probs(run_dir).argmax(1)).state()
    assert state.reviewed == {int(members[0]), int(members[1])}
    assert state.clusters[members[0]] == 0 and state.clusters[members[1]] == 7


@pytest.mark.parametrize("page, query, typed", [
    ("neighbours", {"image": "²"}, None), ("neighbours", {"image": "99999999999999999999"}, None),
    ("neighbours", {}, ("image_query", "#²")), ("curate_export", {}, ("edit_ids", "#² #3 ²")),
])
def test_odd_numbers_in_urls_and_boxes_give_no_traceback(home, monkeypatch, page, query, typed):
    at = app(home, monkeypatch, page=page)
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    if page == "curate_export":
        at.radio(key="edit_source").set_value("Type ids").run()
    if typed:
        (at.text_area if page == "curate_export" else at.text_input)(key=typed[0]).set_value(typed[1]).run()
    assert not at.exception, [e.value for e in at.exception]
    if typed:
        assert "²" in " ".join(w.value for w in at.warning)


def test_a_run_name_that_is_no_run_is_said_and_never_read_as_a_path(home, monkeypatch):
    for name in ("x" * 5000, "missing-run", "../digits"):
        at = app(home, monkeypatch, run=name)  # the first screen says so; the run in the URL is replaced
        assert not at.exception
        assert "There is no run named" in " ".join(w.value for w in at.warning)
        assert at.selectbox(key="run_picker").value in ("digits", "nolabels")  # a real run, said so on screen


def test_the_curators_name_lives_in_the_url(own_home, monkeypatch):
    at = app(own_home, monkeypatch, page="curate_export")
    at.text_input(key="who").set_value("alice").run()
    assert at.query_params["who"] in ("alice", ["alice"])
    fresh = AppTest.from_file(APP, default_timeout=60)   # a refresh: a new session, the same URL
    fresh.query_params["run"], fresh.query_params["who"] = "digits", "alice"
    fresh.run()
    assert fresh.text_input(key="who").value == "alice"
    assert "x" * 101 not in str(fresh.text_input(key="who").proto)  # max_chars keeps names in the log's limit
    assert fresh.text_input(key="who").proto.max_chars == 100


def test_the_curated_evaluation_counts_relabelled_images(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    labels = np.load(run_dir / "images" / "labels.npy")
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    for digit in range(10):  # a curator who gave every image its true class, one by one
        store.relabel(np.flatnonzero(labels == digit), str(digit), "tester")
    at = app(own_home, monkeypatch, page="evaluation")
    model_acc = float(metric(at, "ACC (Hungarian)"))
    at.segmented_control(key="eval_which").set_value("curated").run()
    assert metric(at, "ACC (Hungarian)") == "1.000" and model_acc < 0.99


def test_a_confusion_cell_opens_its_images(home, monkeypatch):
    run_dir = home / "runs" / "digits"
    clusters = result_probs(run_dir).argmax(1)
    labels = np.load(run_dir / "images" / "labels.npy")
    table = np.zeros((10, 10), dtype=int)
    np.add.at(table, (clusters, labels), 1)
    off = np.argwhere((table > 0) & (table < 100))[0]  # a small off-diagonal-ish cell, counted by hand here
    at = app(home, monkeypatch, page="evaluation")
    at.selectbox(key="cell_cluster").set_value(int(off[0]))
    at.selectbox(key="cell_class").set_value(int(off[1])).run()
    grid = next(h.proto.body for h in at.get("html") if f'data-gallery="cell_{off[0]}_{off[1]}"' in h.proto.body)
    assert grid.count("<figure") == min(100, table[off[0], off[1]])


def test_a_click_on_a_confusion_cell_opens_its_images(home, monkeypatch):
    run_dir = home / "runs" / "digits"
    clusters = result_probs(run_dir).argmax(1)
    labels = np.load(run_dir / "images" / "labels.npy")
    table = np.zeros((10, 10), dtype=int)
    np.add.at(table, (clusters, labels), 1)
    matched, classes = linear_sum_assignment(-table)  # rows are drawn in the order of their classes
    row = 4
    cluster = int(matched[np.flatnonzero(classes == row)[0]])
    column = int(np.argsort(table[cluster])[-2])  # the class this cluster holds second most of
    at = app(home, monkeypatch, page="evaluation")
    at.session_state["confusion_clicks"] = {"clicked": {"row": row, "column": column}}
    at.run()
    assert (at.selectbox(key="cell_cluster").value, at.selectbox(key="cell_class").value) == (cluster, column)
    grid = next(h.proto.body for h in at.get("html") if f'data-gallery="cell_{cluster}_{column}"' in h.proto.body)
    assert grid.count("<figure") == min(100, table[cluster, column])
    at.session_state["confusion_clicks"] = {"clicked": {"row": 99, "column": "x"}}  # input: ignored
    at.run()
    assert not at.exception and at.selectbox(key="cell_cluster").value == cluster


def test_filters_narrow_the_map_and_the_gallery(home, monkeypatch):
    run_dir = home / "runs" / "digits"
    probs = result_probs(run_dir)
    labels = np.load(run_dir / "images" / "labels.npy")
    clusters, confidence = probs.argmax(1), probs.max(1)
    at = app(home, monkeypatch, page="embedding")
    at.multiselect(key="filter_clusters").set_value([3]).run()
    kept = np.flatnonzero(clusters == 3)
    assert f"{len(kept):,} of 1,797 images" in texts(at)
    assert f"Filtered · {len(kept):,} images" in [s.value for s in at.subheader]
    at.slider(key="filter_confidence").set_value((0.0, 0.9)).run()
    expected = int(((clusters == 3) & (confidence <= 0.9)).sum())
    assert f"{expected:,} of 1,797 images" in texts(at)
    at.multiselect(key="filter_clusters").set_value([]).run()
    at.slider(key="filter_confidence").set_value((0.0, 1.0))
    at.checkbox(key="filter_wrong").check().run()
    table = np.zeros((10, 10), dtype=int)
    np.add.at(table, (clusters, labels), 1)
    predicted = table.argmax(1)  # each cluster's own majority class: a one-to-one map on this run, hence
    assert len(set(predicted.tolist())) == 10  # also the Hungarian one the page uses
    wrong = int((predicted[clusters] != labels).sum())
    assert f"{wrong:,} of 1,797 images" in texts(at)


def test_cluster_names_on_the_map_leave_the_points_under_them_visible(home, monkeypatch):
    """With a filter on, each cluster's name is drawn at the median of its points shown, as outlined
    text without a box over them."""
    run_dir = home / "runs" / "digits"
    clusters = result_probs(run_dir).argmax(1)
    xy = np.load(run_dir / "projection.npy").astype(np.float32)
    at = app(home, monkeypatch, page="embedding")
    at.multiselect(key="filter_clusters").set_value([3]).run()
    annotations = plotly_specs(at)[0]["layout"]["annotations"]
    assert [a["text"] for a in annotations] == ["cluster 3"]
    label = annotations[0]
    centre = np.median(xy[clusters == 3], axis=0)
    assert np.allclose([label["x"], label["y"]], centre, atol=1e-4)
    assert label.get("bgcolor", "rgba(0,0,0,0)") == "rgba(0,0,0,0)" and "white" in label["font"]["shadow"]
    assert label["font"]["size"] <= 11


def test_find_opens_the_image(home, monkeypatch):
    ids = np.load(home / "runs" / "digits" / "images" / "ids.npy")
    at = app(home, monkeypatch, page="embedding")
    for query, index in (("#5", 5), (str(ids[42]), 42)):
        at.text_input(key="find_image").set_value(query).run()
        assert f">{ids[index]}</h3>" in " ".join(h.proto.body for h in at.get("html")), query
    at.text_input(key="find_image").set_value("nothing-like-this").run()
    assert "No image with id, file name or index" in " ".join(w.value for w in at.warning)


def test_a_result_near_chance_is_said_on_the_clusters_page(own_home, monkeypatch):
    metrics_path = own_home / "runs" / "digits" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["final"] = {"stage": "scan", "why": "test", "warning": "These clusters are barely better than chance: x"}
    metrics_path.write_text(json.dumps(metrics))
    at = app(own_home, monkeypatch, page="clusters")
    assert any("barely better than chance" in w.value for w in at.warning)


def test_the_review_page_lists_the_most_doubtful_first_and_accepting_a_page_removes_it(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    probs = result_probs(run_dir)
    clusters = probs.argmax(1)
    doubt = 0  # worked out here: each neighbourhood's probability votes against the image's cluster
    for name in ("neighbors.npy", "feature_neighbors.npy"):
        near = np.load(run_dir / name)
        doubt = doubt + 1 - np.mean([probs[near[i], clusters[i]] for i in range(len(probs))], axis=1)
    at = app(own_home, monkeypatch, page="review")
    assert metric(at, "Left to review") == f"{len(probs):,}"
    grid = next(h.proto.body for h in at.get("html") if 'data-gallery="review"' in h.proto.body)
    first = [int(i) for i in re.findall(r'data-index="(\d+)"', grid)]
    assert len(first) == 48 and doubt[first[0]] >= doubt.max() - 1e-5  # the page's probabilities are float32
    # its caption: the cluster, then one labelled share (the two neighbourhoods' votes for it, averaged)
    caption = re.search(rf'data-index="{first[0]}".*?<figcaption>(.*?)</figcaption>', grid).group(1)
    assert f"<span>neighbours agree: {1 - doubt[first[0]] / 2:.0%}</span>" in caption
    assert f"<span>cluster {clusters[first[0]]}</span>" in caption and "true: " in caption
    assert min(doubt[first]) >= np.sort(doubt)[-48] - 1e-5  # the page holds the 48 most doubtful
    at.session_state["who"] = "tester"
    button(at, "Accept these 48 where they are").click().run()
    assert not at.exception and metric(at, "Left to review") == f"{len(probs) - 48:,}"
    state = Curation(run_dir, clusters).state()
    assert state.reviewed == set(first) and np.array_equal(state.clusters, clusters)
    grid = next(h.proto.body for h in at.get("html") if 'data-gallery="review"' in h.proto.body)
    assert not {int(i) for i in re.findall(r'data-index="(\d+)"', grid)} & set(first)


def test_refine_starts_from_the_review_page_and_its_scores_show_beside_the_other_stages(own_home, monkeypatch, wait_for):
    ws = Workspace.create(own_home)
    run_dir = ws.runs / "digits"
    probs = result_probs(run_dir)
    labels = np.load(run_dir / "images" / "labels.npy")
    table = np.zeros((10, 10))
    np.add.at(table, (probs.argmax(1), labels), 1)
    rows, cols = linear_sum_assignment(-table)
    cluster_of = dict(zip(cols.tolist(), rows.tolist()))
    wrong = np.flatnonzero(probs.argmax(1) != np.array([cluster_of[int(c)] for c in labels]))[:20]
    Curation(run_dir, probs.argmax(1)).move(wrong, 0)  # twenty images moved by hand (to one cluster)
    at = app(own_home, monkeypatch, page="review")
    assert "**20 images** are labelled one by one" in texts(at)
    assert re.search(r"It runs in the background like a training \(about \d+ s\)", texts(at))  # not "a minute"
    button(at, "Refine with my labels").click().run()
    assert not at.exception and any("Refining:" in s.value for s in at.success)
    wait_for(lambda: jobs.job_state(ws, run_dir).state not in ("starting", "running"), timeout=300)
    wait_for(lambda: jobs.active_run(ws) is None, timeout=30)
    metrics = load_json(run_dir / "metrics.json")
    assert metrics["final"]["stage"] == "refine" and metrics["refine"]["labels"] == 20
    assert (np.load(run_dir / "refine_probs.npy")[wrong].argmax(1) == 0).all()  # where the user put them
    at.run()
    assert "Last refine: 20 labels" in texts(at)
    at.switch_page("pages/evaluation.py").run()
    stages = next(d.value for d in at.dataframe if "stage" in d.value.columns)
    assert "refined with your labels" in stages["stage"].tolist()


def test_the_review_page_lists_images_to_teach_a_refine_and_drops_those_reviewed(own_home, monkeypatch):
    from scan_core.explore.review import teaching_picks
    run_dir = own_home / "runs" / "digits"
    at = app(own_home, monkeypatch, page="review")
    at.segmented_control(key="review_order").set_value("to teach a refine").run()
    assert not at.exception, [e.value for e in at.exception]
    grid = next(h.proto.body for h in at.get("html") if 'data-gallery="teach"' in h.proto.body)
    shown = [int(i) for i in re.findall(r'data-index="(\d+)"', grid)]
    assert shown == teaching_picks(np.load(run_dir / "manifold.npy"), 20).tolist()  # 1% of 1,797, at least 20
    clusters = result_probs(run_dir).argmax(1)
    Curation(run_dir, clusters).accept(shown[:5], clusters[shown[:5]])
    at.run()
    grid = next(h.proto.body for h in at.get("html") if 'data-gallery="teach"' in h.proto.body)
    assert [int(i) for i in re.findall(r'data-index="(\d+)"', grid)] == shown[5:]


def test_neighbours_and_embedding_find_the_same_image_and_a_miss_shows_none(home, monkeypatch):
    at = app(home, monkeypatch, page="neighbours")
    for typed, index in (("digits/0007", 7), ("0012", 12), ("#30", 30)):  # an id, its bare name, an index
        at.text_input(key="image_query").set_value(typed).run()
        assert not at.exception and at.query_params["image"] in (str(index), [str(index)]), typed
        assert f"digits/{index:04d} (#{index})" in texts(at) or any(
            f"digits/{index:04d} (#{index})" in h.proto.body for h in at.get("html")), typed
    at.text_input(key="image_query").set_value("no-such-image").run()
    assert any("No image with id, file name or index" in w.value for w in at.warning)
    assert not at.get("imgs") and not at.subheader  # the image shown before is gone, and its neighbourhood
    embedding = app(home, monkeypatch, page="embedding")
    embedding.text_input(key="find_image").set_value("0012").run()
    assert embedding.session_state[DETAIL].index == 12


def test_thumbnails_picked_with_ctrl_click_move_together_in_one_edit(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    members = members_by_confidence(run_dir, 0)
    at = app(own_home, monkeypatch, page="clusters")
    ops = [[int(members[0]), True], [int(members[1]), True], [int(members[2]), True], [int(members[1]), False]]
    at.session_state["gallery_clicks"] = {"picked": {"ops": ops}}  # four picks sent at once: the last unpicks #1
    at.run()
    at.session_state["gallery_clicks"] = {}
    assert not at.exception and "**2 images picked**" in texts(at)
    grid = next(h.proto.body for h in at.get("html") if 'data-gallery="members_0"' in h.proto.body)
    outlined = [int(i) for i in re.findall(r'data-index="(\d+)" data-gallery="members_0" class="scan-picked"', grid)]
    assert sorted(outlined) == sorted([int(members[0]), int(members[2])])
    next(t for t in at.text_input if t.label == "Move them to cluster").set_value("5")
    button(at, "Move").click().run()
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    assert [(e["kind"], sorted(e["payload"]["images"])) for e in store.history()] == [
        ("move", sorted([int(members[0]), int(members[2])]))]
    assert (store.state().clusters[[members[0], members[2]]] == 5).all() and "picked**" not in texts(at)


def test_picked_thumbnails_can_be_dropped_from_the_map_selection(home, monkeypatch):
    """A box selection trimmed by a few images: pick them in the selection's gallery, then drop them;
    what the browser sends that is no pick is left out."""
    from ui.keys import SELECTION
    at = app(home, monkeypatch, page="embedding")
    at.session_state["embedding_selection"] = {"selected": list(range(40, 60))}
    at.run()
    at.session_state["embedding_selection"] = {}
    ops = [[41, True], [45, True], [3, True], [True, True], [10**9, True], ["7", True], [8, "yes"], [9]]
    at.session_state["gallery_clicks"] = {"picked": {"ops": ops}}
    at.run()
    at.session_state["gallery_clicks"] = {}
    assert not at.exception and "**3 images picked**" in texts(at)
    button(at, "Drop 2 from the map selection").click().run()
    assert not at.exception
    assert at.session_state[SELECTION]["ids"].tolist() == [i for i in range(40, 60) if i not in (41, 45)]
    assert "**1 image picked**" in texts(at)


def test_the_review_page_shows_near_duplicates_and_outliers_from_the_features(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    features = np.load(run_dir / "features.npy")
    neighbors = np.load(run_dir / "neighbors.npy")
    twin = int(neighbors[100, 0])
    features[twin] = features[100] * 2  # the same direction: a cosine of 1
    np.save(run_dir / "features.npy", features)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    alike = np.array([[unit[i] @ unit[j] for j in row] for i, row in enumerate(neighbors)])  # one pair at a time
    at = app(own_home, monkeypatch, page="review")
    at.segmented_control(key="review_order").set_value("near-duplicates").run()
    assert not at.exception, [e.value for e in at.exception]
    grid = next(h.proto.body for h in at.get("html") if 'data-gallery="duplicates"' in h.proto.body)
    shown = [int(i) for i in re.findall(r'data-index="(\d+)"', grid)]
    pairs = {tuple(sorted((i, int(j)))) for i, row in enumerate(neighbors) for j, a in zip(row, alike[i])
             if a >= 0.98 and i != j}
    assert len(shown) == min(48, 2 * len(pairs)) and sorted(shown[:2]) == sorted([100, twin])
    assert {tuple(sorted(shown[k:k + 2])) for k in range(0, len(shown), 2)} <= pairs
    at.segmented_control(key="review_order").set_value("outliers").run()
    grid = next(h.proto.body for h in at.get("html") if 'data-gallery="isolated"' in h.proto.body)
    shown = [int(i) for i in re.findall(r'data-index="(\d+)"', grid)]
    assert shown == np.argsort(alike.mean(1), kind="stable")[:48].tolist()


def test_a_refine_can_be_undone_and_its_clusters_go_back(jobs_home, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(jobs_home, home)
    run_dir = home / "runs" / "refined"
    before = load_json(run_dir / "metrics.json")["refine"]["before"]
    assert before["stage"] in ("scan", "selflabel") and "temperature" in before
    at = app(home, monkeypatch, run="refined", page="review")
    button(at, "Undo the refine").click().run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = load_json(run_dir / "metrics.json")
    assert metrics["final"] == before and "refine" not in metrics and metrics["refine_undone"]["labels"] == 40
    assert not (run_dir / "refine_probs.npy").exists() and (run_dir / "refine-undone" / "refine_probs.npy").exists()
    assert np.array_equal(result_probs(run_dir).argmax(1),
                          np.load(run_dir / f"{before['stage']}_probs.npy").argmax(1))
    assert not any(b.label == "Undo the refine" for b in at.button)
    at.switch_page("pages/data_training.py").run()
    assert not at.exception and button(at, "Start training")


def test_the_members_gallery_lists_the_reviewed_or_the_others(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    members = members_by_confidence(run_dir, 0)
    Curation(run_dir, result_probs(run_dir).argmax(1)).accept(members[:3], [0, 0, 0])
    at = app(own_home, monkeypatch, page="clusters")
    at.segmented_control(key="member_filter").set_value("reviewed").run()
    grid = next(h.proto.body for h in at.get("html") if 'data-gallery="members_0"' in h.proto.body)
    assert [int(i) for i in re.findall(r'data-index="(\d+)"', grid)] == members[:3].tolist()
    at.segmented_control(key="member_filter").set_value("not reviewed").run()
    grid = next(h.proto.body for h in at.get("html") if 'data-gallery="members_0"' in h.proto.body)
    assert [int(i) for i in re.findall(r'data-index="(\d+)"', grid)] == members[3:103].tolist()


def test_every_page_opens_on_a_large_synthetic_run(tmp_path, monkeypatch):
    """The run bench/bench_app.py serves at a million images, at 20,000 (the density map's default
    from there on): every page opens, and Evaluation scores it as counted by hand."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("synthetic_run", Path(__file__).parents[1] / "bench" / "synthetic_run.py")
    synthetic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synthetic)
    ws = Workspace.create(tmp_path / "home")
    run_dir = synthetic.write_run(ws.runs / "big", 20_000, clusters=12)
    for page in PAGES:
        at = app(ws.home, monkeypatch, run="big", page=page)
        assert at.title[0].value == TITLES[page] and not at.error, (page, [e.value for e in at.error])
    # cluster c is class c but for the 10% relabelled at random: the identity is the best matching
    found = np.load(run_dir / "scan_probs.npy").argmax(1)
    labels = np.load(run_dir / "images" / "labels.npy")
    at = app(ws.home, monkeypatch, run="big", page="evaluation")
    assert metric(at, "ACC (Hungarian)") == f"{(found == labels).mean():.3f}"


def test_the_evaluation_of_a_run_matches_scikit_learn(home):
    """Scores, the per-class precision / recall (from the confusion counts) and the predicted class
    of every image, against scikit-learn and a Hungarian matching done here on the digits run."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, precision_recall_fscore_support

    from scan_core.explore.results import RunResults
    results = RunResults.load(home / "runs" / "digits")
    clusters, labels = results.clusters.copy(), results.images.labels
    clusters[:40] = 11  # an extra cluster: mapped by majority vote, not one to one
    evaluation = results.evaluation(clusters)
    assert evaluation["mapping_kind"] == "majority vote"
    majority = {k: np.bincount(labels[clusters == k]).argmax() for k in np.unique(clusters)}
    assert np.array_equal(evaluation["predicted"], [majority[k] for k in clusters])
    precision, recall, _, support = precision_recall_fscore_support(labels, evaluation["predicted"], labels=range(10),
                                                                    zero_division=0)
    assert np.allclose([c["precision"] for c in evaluation["per_class"]], precision)
    assert np.allclose([c["recall"] for c in evaluation["per_class"]], recall)
    assert [c["images"] for c in evaluation["per_class"]] == support.tolist()
    assert np.isclose(evaluation["nmi"], normalized_mutual_info_score(labels, clusters))
    assert np.isclose(evaluation["ari"], adjusted_rand_score(labels, clusters))
    whole = results.evaluation(results.clusters)
    rows, cols = linear_sum_assignment(-np.array([[np.sum((results.clusters == k) & (labels == c)) for c in range(10)]
                                                  for k in range(10)]))
    assert np.isclose(whole["acc"], sum(np.sum((results.clusters == k) & (labels == c)) for k, c in zip(rows, cols)) / 1797)
