"""The Data & training page as a user walks through it (``streamlit.testing.v1.AppTest``): starting
and picking runs, the progress card while a job runs and ends, the sources and uploads, the time
estimate, and the app's chrome (toolbar, logo)."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scan_core.data.artifacts import load_json, save_json
from scan_core.data.rundir import process_start, read_events
from scan_core.data.sources.common import DATA_DIR_ENV
from scan_core.engine.progress import Progress
from scan_core.explore import jobs
from scan_core.explore.workspace import TRASH_NAME, Workspace
from scan_core.method.projection import umap_seconds

from apptest import app, button, metric, texts

ROOT = Path(__file__).resolve().parent.parent


def subheaders(at) -> list[str]:
    return [s.value for s in at.subheader]


def shown_run(at) -> str:
    """The run the page shows: the URL's ``?run=``, checked against the sidebar and the card."""
    run = at.query_params["run"]
    run = run[0] if isinstance(run, list) else run
    assert at.selectbox(key="run_picker").value == run
    assert any(f" {run} — " in heading for heading in subheaders(at))  # the progress card
    return run


def sidebar_state(at) -> str:
    """The run state the sidebar shows beside its run picker."""
    return next(c.value for c in at.sidebar.caption if " · " in c.value).replace("\\", "")


def tick_row(at, key: str, row: int):
    """Tick row ``row`` of the table ``key`` as the browser does: its selection sent as the
    dataframe's widget state with the next run (AppTest has no method for it)."""
    table = next(d for d in at.dataframe if d.key == key)
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = table.proto.id
    state.string_value = json.dumps({"selection": {"rows": [row], "columns": [], "cells": []}})
    return at._run(states)


def png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@contextmanager
def training(ws: Workspace, run_dir: Path):
    """The workspace lock held for ``run_dir``, as by its training process (here: this test)."""
    with jobs._training_lock(ws):
        save_json(ws.home / jobs.HOLDER_NAME, {"run_dir": str(run_dir.resolve())})
        yield


def running_status(**fields) -> dict:
    """A ``running`` status whose process is this test's (alive, so it is not read as interrupted)."""
    return {"state": "running", "error": None, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "updated": time.time(), **fields}


def start_tiny(at, name: str) -> None:
    """Start a run of the digits with the tiny preset, named ``name``, from the Data & training page."""
    at.selectbox(key="start_preset:digits").set_value("tiny")
    at.text_input(key="start_name:digits").set_value(name)
    button(at, "Start training").click().run()


def test_starting_a_run_shows_it_on_every_page_until_it_finishes(own_home, monkeypatch, wait_for):
    ws = Workspace.create(own_home)
    at = app(own_home, monkeypatch)
    assert shown_run(at) == "digits"
    start_tiny(at, "fresh")
    assert not at.exception, [e.value for e in at.exception]
    assert shown_run(at) == "fresh"
    at.run()  # the sidebar's picker no longer switches back to the run shown before
    assert shown_run(at) == "fresh" and not any("Training now" in i.value for i in at.info)
    wait_for(lambda: jobs.job_state(ws, ws.runs / "fresh").state not in ("starting", "running"), timeout=300)
    wait_for(lambda: jobs.active_run(ws) is None, timeout=30)
    at.run()
    assert shown_run(at) == "fresh" and "fresh — finished" in subheaders(at)[0]
    assert "fresh · finished" in sidebar_state(at)


def test_ticking_a_row_of_the_runs_table_opens_that_run(home, monkeypatch):
    at = app(home, monkeypatch)
    assert shown_run(at) == "digits"
    runs = next(d for d in at.dataframe if d.key == "runs_table").value["run"].tolist()
    tick_row(at, "runs_table", runs.index("nolabels"))
    assert not at.exception, [e.value for e in at.exception]
    assert shown_run(at) == "nolabels"
    at.run()
    assert shown_run(at) == "nolabels"


def test_a_run_whose_process_is_exiting_shows_its_end_not_starting(own_home, monkeypatch):
    """Between the last status write and the process's exit the workspace lock is still held."""
    ws = Workspace.create(own_home)
    run_dir = ws.runs / "digits"
    save_json(run_dir / "job.json", {"dataset": "digits", "launched": load_json(run_dir / "status.json")["updated"] - 5})
    with training(ws, run_dir):
        at = app(own_home, monkeypatch)
    assert "digits — finished" in subheaders(at)[0]
    assert "starting" not in texts(at) and not [b for b in at.button if b.label == "Cancel"]
    assert sidebar_state(at) == "digits · finished"  # the sidebar says the same


def test_a_cancelled_run_is_information_not_an_error(own_home, monkeypatch):
    stopped = own_home / "runs" / "stopped"
    stopped.mkdir()
    shutil.copy(own_home / "runs" / "digits" / "config.json", stopped / "config.json")
    save_json(stopped / "status.json", {"state": "cancelled", "stage": "scan", "completed": ["images", "pretext"],
                                        "error": "cancelled by user", "pid": None, "updated": time.time()})
    at = app(own_home, monkeypatch, run="stopped")
    assert not at.error, [e.value for e in at.error]
    assert any("Cancelled by user" in i.value for i in at.info)
    assert any(b.label == "Resume" for b in at.button)
    says = next(i.value for i in at.info if "Cancelled by user" in i.value)  # what Resume keeps, and what not
    assert "keeps every finished stage and training epoch" in says and "the feature banks" in says


def projecting_run(home: Path) -> tuple[Path, float]:
    """A run ``umapping`` of ``home`` in its projection stage, 5 s of 14 in, by this test's process;
    its directory and the time of its last step."""
    run_dir = home / "runs" / "umapping"
    run_dir.mkdir()
    shutil.copy(home / "runs" / "digits" / "config.json", run_dir / "config.json")
    metrics = load_json(home / "runs" / "digits" / "metrics.json")
    save_json(run_dir / "metrics.json", {stage: metrics[stage] for stage in ("images", "pretext", "neighbors")})
    now = time.time()
    save_json(run_dir / "status.json", running_status(stage="projection", completed=["images", "pretext", "neighbors"]))
    with open(run_dir / "events.jsonl", "w") as events:
        for event in ({"time": now - 5, "kind": "stage_start", "stage": "projection"},
                      {"time": now, "kind": "step", "stage": "projection", "step": 5, "total": 14, "loss": None,
                       "eta_s": 9.0, "unit": "s"}):
            events.write(json.dumps(event) + "\n")
    return run_dir, now


def test_the_projection_stage_and_the_whole_run_show_estimates(own_home, monkeypatch):
    run_dir, now = projecting_run(own_home)
    at = app(own_home, monkeypatch, run="umapping")
    assert [p.text for p in at.progress] == ["projection: 5 s (estimated 14 s)"]
    assert not at.get("vega_lite_chart")  # seconds against an estimate: no loss to draw
    assert re.search(r"Whole run: about \*\*\d+ s\*\* left \(each stage", texts(at))
    with open(run_dir / "events.jsonl", "w") as events:  # the same stage 20 s in: longer than estimated, said so
        for event in ({"time": now - 20, "kind": "stage_start", "stage": "projection"},
                      {"time": now, "kind": "step", "stage": "projection", "step": 20, "total": 14, "loss": None,
                       "eta_s": None, "unit": "s"}):
            events.write(json.dumps(event) + "\n")
    at.run()
    assert [p.text for p in at.progress] == ["projection: 20 s, longer than the estimated 14 s"]
    assert "projection is taking longer than estimated" in texts(at)
    table = next(d for d in at.dataframe if d.key == "runs_table")
    assert table.proto.placeholder == "–"  # a run without scores yet: a dash, not "None"
    row = table.value.set_index("run").loc["umapping"]
    assert np.isnan(row["acc"]) and np.isnan(row["nmi"])


def test_the_runs_are_listed_once_per_rerun_of_the_page(own_home, monkeypatch):
    """Listing the runs takes the workspace lock and reads every run's files: the sidebar lists them
    once per script run, and the runs table, the start form's estimate and the card of a training
    run (its whole-run estimate) reuse that list."""
    projecting_run(own_home)
    listed = []
    real = jobs.list_runs

    def counting(ws):
        rows = real(ws)
        listed.append([row.name for row in rows])
        return rows

    monkeypatch.setattr(jobs, "list_runs", counting)
    at = app(own_home, monkeypatch, run="umapping")
    everything = sorted(path.name for path in (own_home / "runs").iterdir())
    assert [sorted(names) for names in listed] == [everything]
    assert "Expected training time" in texts(at) and "Whole run: about" in texts(at)
    assert sorted(next(d for d in at.dataframe if d.key == "runs_table").value["run"]) == everything
    for _ in range(2):
        listed.clear()
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert len(listed) == 1 and re.search(r"Whole run: about|projection is taking longer than estimated", texts(at))


def test_the_loss_chart_names_its_axes(own_home, monkeypatch):
    run_dir = own_home / "runs" / "training"
    run_dir.mkdir()
    shutil.copy(own_home / "runs" / "digits" / "config.json", run_dir / "config.json")
    save_json(run_dir / "metrics.json", {"images": {"count": 1797, "height": 8, "seconds": 0.1}})
    save_json(run_dir / "status.json", running_status(stage="scan", completed=["images", "pretext", "manifold",
                                                                                 "neighbors"]))
    now = time.time()
    with open(run_dir / "events.jsonl", "w") as events:
        events.write(json.dumps({"time": now - 4, "kind": "stage_start", "stage": "scan"}) + "\n")
        for step in (1, 2, 3):
            events.write(json.dumps({"time": now - 4 + step, "kind": "step", "stage": "scan", "step": step,
                                     "total": 10, "loss": 1.0 / step, "eta_s": 5.0}) + "\n")
    at = app(own_home, monkeypatch, run="training")
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    encoding = spec.get("encoding") or spec["layer"][0]["encoding"]
    assert (encoding["x"]["title"], encoding["y"]["title"]) == ("scan training step", "loss")


def test_the_real_projection_stage_reports_seconds_against_its_estimate(home):
    events = [e for e in read_events(home / "runs" / "digits") if e.get("stage") == "projection"]
    steps = [e for e in events if e["kind"] == "step"]
    assert steps and all(e["unit"] == "s" for e in steps)
    assert all(e["eta_s"] is not None for e in steps[1:] if e["step"] <= e["total"])  # the rate since the first
    assert steps[0]["total"] >= round(umap_seconds(1797))
    assert [e["kind"] for e in events][0] == "stage_start" and events[-1]["kind"] == "stage_end"


def test_a_timed_stage_counts_seconds_and_stops_with_its_block(tmp_path):
    progress = Progress(tmp_path, show_bar=False, min_interval=0.0)
    progress.start("projection")
    with progress.timed(0.5, every=0.05):
        time.sleep(1.3)
    progress.end()
    events = read_events(tmp_path)
    steps = [e for e in events if e["kind"] == "step"]
    assert [e["step"] for e in steps] == sorted(e["step"] for e in steps) and steps[-1]["step"] == 1
    assert {e["total"] for e in steps} == {1}  # the estimate (0.5 s, at least 1): never stretched to the time taken
    assert all(e["eta_s"] is None for e in steps if e["step"] > e["total"])  # no ETA past the estimate
    assert events[-1]["kind"] == "stage_end"  # nothing ticks after the block


def test_a_relative_folder_is_looked_up_in_the_data_roots(tmp_path, monkeypatch):
    ws = Workspace.create(tmp_path / "home")
    cats = ws.data_roots[0] / "pets" / "cats"
    cats.mkdir(parents=True)
    for i in range(24):
        (cats / f"{i}.png").write_bytes(png((10 * i, 100, 200 - 5 * i)))
    at = app(ws.home, monkeypatch, run=None)
    at.segmented_control(key="source_kind").set_value("Folder on the server").run()
    at.text_input(key="folder").set_value("pets").run()  # not ./pets of the server's working directory
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Images") == "24" and metric(at, "Labels") == "1 class"


def test_an_upload_that_fails_to_load_is_not_kept_and_zips_extract_into_the_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    ws = Workspace.create(tmp_path / "home")
    at = app(ws.home, monkeypatch, run=None)
    at.segmented_control(key="source_kind").set_value("Upload a zip").run()
    for name, data, problem in (
            ("broken.zip", b"not a zip at all", "not a valid zip file (File is not a zip file)"),
            ("blank.zip", zip_of({"a/1.png": b"no png"}),
             "no readable images (1 files skipped: 1.png: not a readable image file)")):
        at.file_uploader(key="upload").set_value((name, data, "application/zip")).run()
        # the user's file name and the problem, never where the zip was saved or extracted
        assert [e.value for e in at.error] == [f"{name}: {problem}"]
        assert not list(ws.uploads.iterdir()), name
        at.run()  # still in the widget: refused again, not written again
        assert [e.value for e in at.error] == [f"{name}: {problem}"] and not list(ws.uploads.iterdir()), name
    assert not list((ws.data_dir / "zips").iterdir())  # nor is an extraction nothing can use
    good = zip_of({f"{folder}/{i}.png": png((i * 9, 50 if folder == "a" else 200, 90)) for folder in "ab"
                   for i in range(15)})
    at.file_uploader(key="upload").set_value(("good.zip", good, "application/zip")).run()
    assert metric(at, "Images") == "30" and metric(at, "Labels") == "2 classes"
    assert len(list(ws.uploads.iterdir())) == 1
    assert ws.data_dir == ws.home / "cache" and len(list((ws.data_dir / "zips").iterdir())) == 1


def test_colour_images_without_the_imagenet_weights_say_so_before_start(tmp_path, monkeypatch):
    from scan_core import presets
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    ws = Workspace.create(tmp_path / "home")
    at = app(ws.home, monkeypatch, run=None)
    at.segmented_control(key="source_kind").set_value("Upload a zip").run()
    colours = zip_of({f"{folder}/{i}.png": png((i * 9, 50 if folder == "a" else 200, 90)) for folder in "ab"
                      for i in range(15)})
    at.file_uploader(key="upload").set_value(("colours.zip", colours, "application/zip")).run()
    # the weights are installed here: the note says which backbone auto takes, and why
    assert [i.value for i in at.info if "efficientnet-lite0-imagenet (ImageNet-1k labels): the strongest" in i.value]
    assert not any("no pretrained backbone" in i.value for i in at.info)
    monkeypatch.setattr(presets, "present_backbones", lambda: [])
    at.run()
    assert [i.value for i in at.info if "no pretrained backbone" in i.value] == [presets.NO_COLOUR_BACKBONE]


def seconds_in(text: str) -> float:
    amount, unit = re.search(r"Expected training time: about \*\*([\d.]+) (s|min|h)\*\*", text).groups()
    return float(amount) * {"s": 1, "min": 60, "h": 3600}[unit]


def test_the_expected_training_time_follows_the_preset(home, monkeypatch):
    at = app(home, monkeypatch)
    digits = seconds_in(texts(at))
    assert "An estimate from the 1,797 images" in texts(at)
    at.selectbox(key="start_preset:digits").set_value("tiny").run()
    assert 0 < seconds_in(texts(at)) < digits  # fewer epochs, no UMAP


def test_the_toolbar_has_no_deploy_button_and_the_logo_reads_on_light_and_dark():
    code = "import streamlit.config as c; print(c.get_option('client.toolbarMode'))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip() == "minimal"
    colours = set(re.findall(r'fill="(#[0-9A-Fa-f]{6})"', (ROOT / "assets" / "logo.svg").read_text()))
    assert colours
    for background in ("#FFFFFF", "#F0F2F6", "#0E1117", "#262730"):  # Streamlit's light and dark pages, sidebars
        assert all(contrast(colour, background) >= 3 for colour in colours), background


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two ``#RRGGBB`` colours."""
    def luminance(colour: str) -> float:
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_a_folder_without_labels_starts_with_k_suggested_and_clusters_show_why(own_home, monkeypatch, wait_for):
    ws = Workspace.create(own_home)
    folder = ws.data_roots[0] / "unsorted"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(60):  # dark, mid and bright squares with noise, no label folders
        level = (40, 128, 215)[i % 3]
        Image.fromarray(np.clip(level + rng.normal(0, 8, (16, 16)), 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    at = app(ws.home, monkeypatch, run=None)
    at.segmented_control(key="source_kind").set_value("Folder on the server").run()
    at.text_input(key="folder").set_value("unsorted").run()
    suggest = next(t for t in at.toggle if t.label == "Suggest K")
    clusters = next(n for n in at.number_input if n.label == "Clusters K")
    assert suggest.value and clusters.disabled  # no labels: K is suggested, not guessed
    assert "unsorted-kauto" in [t.placeholder for t in at.text_input]
    next(s for s in at.selectbox if s.label == "Preset").set_value("tiny").run()
    button(at, "Start training").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_dir = ws.runs / "unsorted-kauto"
    assert load_json(run_dir / "job.json")["clusters"] == "auto"
    wait_for(lambda: jobs.job_state(ws, run_dir).state not in ("starting", "running"), timeout=300)
    wait_for(lambda: jobs.active_run(ws) is None, timeout=30)
    k = load_json(run_dir / "suggested_k.json")["k"]
    assert load_json(run_dir / "config.json")["num_clusters"] == k
    at.switch_page("pages/clusters.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(e.label == f"Why K = {k}?" for e in at.expander)
    assert any(f"Suggested K = {k}:" in c.value for c in at.caption)


def test_suggest_on_the_data_page_reads_an_earlier_run_of_the_dataset_and_fills_k(home, monkeypatch):
    at = app(home, monkeypatch)
    button(at, "Suggest").click().run()
    assert not at.exception, [e.value for e in at.exception]
    k = load_json(home / "runs" / "digits" / "config.json")["num_clusters"]  # no stored suggestion: computed
    use = next(b for b in at.button if b.label.startswith("Use K = "))
    suggested = int(use.label.removeprefix("Use K = "))
    assert 2 <= suggested <= 30 and any(f"Suggested K = {suggested}:" in c.value for c in at.caption)
    at.number_input(key="start_clusters:digits").set_value(k + 5 if suggested == k else k).run()
    use.click().run()
    assert at.number_input(key="start_clusters:digits").value == suggested
    assert not at.toggle(key="start_suggest:digits").value


def test_a_run_name_keeps_its_letters_and_the_page_says_the_name_used(own_home, monkeypatch, wait_for):
    ws = Workspace.create(own_home)
    at = app(own_home, monkeypatch)
    start_tiny(at, "Clip art for my Étude — 2,000 stamps")
    try:
        assert not at.exception, [e.value for e in at.exception]
        assert shown_run(at) == "Clip-art-for-my-Étude-2-000-stamps"
        assert (ws.runs / "Clip-art-for-my-Étude-2-000-stamps").is_dir()
        assert any(c.value.startswith(":material/edit: Named **Clip-art-for-my-Étude-2-000-stamps**") for c in at.caption)
    finally:
        wait_for(lambda: jobs.active_run(ws) is None, timeout=300)


def test_a_double_clicked_start_makes_one_run_and_says_nothing_of_a_refusal(own_home, monkeypatch, wait_for):
    ws = Workspace.create(own_home)
    at = app(own_home, monkeypatch)
    start_tiny(at, "twice")
    button(at, "Start training").click().run()  # the second click of a double click, while the job starts
    try:
        assert not at.exception and not at.warning, [w.value for w in at.warning]
        assert shown_run(at) == "twice"
        assert sorted(p.name for p in ws.runs.iterdir()) == ["digits", "nolabels", "twice"]
    finally:
        wait_for(lambda: jobs.active_run(ws) is None, timeout=300)
    at.text_input(key="start_name:digits").set_value("other")  # another request while one runs is still refused
    with training(ws, ws.runs / "twice"):
        button(at, "Start training").click().run()
    assert any("Not started: a training is already running (twice)" in w.value for w in at.warning)


def test_a_folder_too_small_to_train_cannot_be_started_and_says_why_in_the_apps_words(tmp_path, monkeypatch):
    ws = Workspace.create(tmp_path / "home")
    single = ws.home / "data" / "single"
    single.mkdir(parents=True)
    (single / "only.png").write_bytes(png((200, 30, 30)))
    at = app(ws.home, monkeypatch, run=None)
    at.segmented_control(key="source_kind").set_value("Folder on the server").run()
    at.text_input(key="folder").set_value("single").run()
    refusal = next(e.value for e in at.error if e.value.startswith("Cannot start:"))
    assert "single has 1 image: too few to suggest a number of clusters" in refusal and "--" not in refusal
    assert button(at, "Start training").disabled
    at.toggle(key=f"start_suggest:{single}").set_value(False).run()  # K = 2 given: still more clusters than images
    refusal = next(e.value for e in at.error if e.value.startswith("Cannot start:"))
    assert "2 clusters exceed the 1 image of" in refusal and button(at, "Start training").disabled


def test_a_run_refused_for_its_settings_offers_no_resume(own_home, monkeypatch):
    """A job that failed its checks (no config.json written): its reason, and no Resume that would fail again."""
    ws = Workspace.create(own_home)
    refused = ws.new_run_dir("refused")
    save_json(refused / "job.json", {"dataset": "/data/single", "launched": time.time() - 5, "created": time.time()})
    (refused / "train.log").write_text("error: single has 1 image: too few to suggest a number of clusters\n")
    at = app(own_home, monkeypatch, run="refused")
    assert any(e.value.startswith("Not started: error: single has 1 image") for e in at.error)
    assert not any(b.label == "Resume" for b in at.button)
    with pytest.raises(ValueError, match="never started training"):
        jobs.resume(ws, refused)


def test_the_form_keeps_the_source_and_the_typed_folder_after_another_page(tmp_path, monkeypatch):
    ws = Workspace.create(tmp_path / "home")
    (ws.home / "data" / "pets").mkdir(parents=True)
    at = app(ws.home, monkeypatch, run=None)
    at.segmented_control(key="source_kind").set_value("Folder on the server").run()
    at.text_input(key="folder").set_value("pets").run()
    at.switch_page("pages/clusters.py").run()  # Back to Data & training after another page
    at.switch_page("pages/data_training.py").run()
    assert at.segmented_control(key="source_kind").value == "Folder on the server"
    assert at.text_input(key="folder").value == "pets"


def pairs(counts) -> float:
    return float((np.asarray(counts) * (np.asarray(counts) - 1) / 2).sum())


def test_runs_are_compared_renamed_and_deleted(own_home, monkeypatch):
    from scan_core.explore.curation import Curation

    from apptest import result_probs
    ws = Workspace.create(own_home)
    base = result_probs(ws.runs / "nolabels").argmax(1)
    moved = np.flatnonzero(base == 0)[:60]
    Curation(ws.runs / "nolabels", base).move(moved, 1)  # the copy differs by 60 images moved by hand
    at = app(own_home, monkeypatch)
    at.selectbox(key="compare_a").set_value("digits").run()
    at.selectbox(key="compare_b").set_value("nolabels").run()
    a, b = base, base.copy()
    b[moved] = 1
    cross = np.zeros((10, 10), dtype=int)
    for i, j in zip(a, b):  # the cross-table, one image at a time
        cross[i, j] += 1
    shown = next(d.value for d in at.dataframe if "nolabels: 0" in d.value.columns)
    assert np.array_equal(shown.to_numpy(), cross)
    n = len(a)  # the adjusted Rand index from the pair counts (Hubert & Arabie 1985)
    index, rows, cols = pairs(cross), pairs(cross.sum(1)), pairs(cross.sum(0))
    expected = rows * cols / pairs([n])
    ari = (index - expected) / ((rows + cols) / 2 - expected)
    assert metric(at, "Clusters agree (ARI, same images)") == f"{ari:.3f}" and ari < 0.999
    scores = next(d.value for d in at.dataframe if "ACC" in d.value.columns)
    assert scores["run"].tolist() == ["digits", "nolabels"]
    assert scores["ACC"].iloc[0] == pytest.approx(load_json(ws.runs / "digits" / "metrics.json")[
        load_json(ws.runs / "digits" / "metrics.json")["final"]["stage"]]["acc"])

    at.selectbox(key="managed_run").set_value("nolabels").run()
    at.text_input(key="new_run_name").set_value("unlabelled").run()
    button(at, "Rename").click().run()
    assert not at.exception and sorted(p.name for p in ws.runs.iterdir()) == ["digits", "unlabelled"]
    assert any("Renamed nolabels to unlabelled" in i.value for i in at.info)
    assert len(Curation(ws.runs / "unlabelled", base).history()) == 1  # its curation went with it
    at.selectbox(key="managed_run").set_value("unlabelled").run()
    button(at, "Delete…").click().run()
    assert (ws.runs / "unlabelled").exists()  # asked, not done
    button(at, "Confirm delete of unlabelled").click().run()
    assert not at.exception and [p.name for p in ws.runs.iterdir()] == ["digits"]
    trashed = list((own_home / TRASH_NAME).iterdir())
    assert len(trashed) == 1 and (trashed[0] / "curation.sqlite").exists()
    assert at.selectbox(key="run_picker").options == ["digits"]
    finished = load_json(ws.runs / "digits" / "status.json")
    with training(ws, ws.runs / "digits"):  # a finished run whose process is still exiting: it may go
        assert jobs.job_state(ws, ws.runs / "digits").state == "finished"
        save_json(ws.runs / "digits" / "status.json", running_status(stage="scan", completed=["images"]))
        with pytest.raises(ValueError, match="digits is training"):  # a run that trains may not
            jobs.delete_run(ws, ws.runs / "digits")
    save_json(ws.runs / "digits" / "status.json", finished)


def test_a_run_of_two_processes_starts_from_the_form_and_says_so(own_home, monkeypatch, wait_for):
    ws = Workspace.create(own_home)
    at = app(own_home, monkeypatch)
    assert at.number_input(key="start_processes:digits").value == jobs.default_processes() == 1  # no GPU here
    at.selectbox(key="start_preset:digits").set_value("tiny")
    at.number_input(key="start_processes:digits").set_value(2)
    at.text_input(key="start_name:digits").set_value("two")
    button(at, "Start training").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert load_json(ws.runs / "two" / "job.json")["processes"] == 2
    wait_for(lambda: jobs.job_state(ws, ws.runs / "two").state not in ("starting", "running"), timeout=300)
    wait_for(lambda: jobs.active_run(ws) is None, timeout=60)
    assert jobs.job_state(ws, ws.runs / "two").state == "finished", (ws.runs / "two" / "train.log").read_text()[-2000:]
    assert load_json(ws.runs / "two" / "config.json")["world_size"] == 2
    at.run()
    assert any("2 processes train this run together" in c.value for c in at.caption)
