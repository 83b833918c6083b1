"""Curated table and its exports: CSV, JSON, Label Studio predictions, one folder per label."""
import csv
import io
import json
import os
import zipfile
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from scan_core.data.images import ImageSet
from scan_core.explore import export
from scan_core.explore.curation import Curation
from scan_core.explore.export import (
    COLUMNS,
    CuratedRows,
    curated_table,
    export_csv,
    export_image_folder,
    export_json,
    export_label_studio,
    image_folder_paths,
    image_folder_zip,
    safe_name,
)

IDS = ["a/x0.png", "b/img.png", "a/x2.png", "b/x3 space.png", "a/img.png", "c/x5.png"]
BASE = np.array([0, 0, 1, 1, 2, 2])


@pytest.fixture
def folder_set(tmp_path):
    """Six 4x4 colour PNGs on disk (two share the file name img.png), labelled by top folder."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (len(IDS), 4, 4, 3), dtype=np.uint8)
    src = tmp_path / "src"
    for rel, image in zip(IDS, pixels):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(src / rel)
    return ImageSet(name="tiny", images=pixels, ids=np.asarray(IDS),
                    paths=np.asarray([str(src / rel) for rel in IDS]),
                    labels=np.array([0, 1, 0, 1, 0, 2]), class_names=["a", "b", "c"])


@pytest.fixture
def probs():
    return np.random.default_rng(1).dirichlet(np.ones(3), size=len(IDS))


@pytest.fixture
def state(tmp_path):
    (tmp_path / "run").mkdir()
    cur = Curation(tmp_path / "run", BASE)
    cur.name_cluster(0, "cat")
    cur.move([1], 2)
    cur.relabel([3], "../evil")
    cur.mark_outliers([5])
    return cur.state()


@pytest.fixture
def table(folder_set, probs, state):
    return curated_table(folder_set, probs, state)


def test_curated_table_rows(table, folder_set, probs):
    assert list(table.columns) == [*COLUMNS, "true_label"]
    assert table["index"].tolist() == list(range(6))
    assert table["id"].tolist() == IDS
    assert table["path"].tolist() == folder_set.paths.tolist()
    assert table["cluster"].tolist() == [0, 2, 1, 1, 2, 2]
    assert table["cluster_name"].tolist() == ["cat", "", "", "", "", ""]
    assert np.array_equal(table["confidence"], probs.max(1))  # the model's, also for the moved image
    assert table["curated_label"].tolist() == ["cat", "cluster 2", "cluster 1", "../evil", "cluster 2", "cluster 2"]
    assert table["outlier"].tolist() == [False] * 5 + [True]
    assert table["reviewed"].tolist() == [False, True, False, False, False, False]  # the image moved one by one
    assert table["true_label"].tolist() == ["a", "b", "a", "b", "a", "c"]


def test_the_likely_wrong_score_is_a_column_when_given(folder_set, probs, state):
    doubt = np.array([0.1, 0.9, 0.2, 0.3, 0.123456, 0.0])
    table = curated_table(folder_set, probs, state, likely_wrong=doubt)
    assert list(table.columns) == [*COLUMNS, "likely_wrong", "true_label"]
    assert table["likely_wrong"].tolist() == [0.1, 0.9, 0.2, 0.3, 0.1235, 0.0]
    with pytest.raises(ValueError, match="likely_wrong must be \\(N,\\) with N = 6"):
        curated_table(folder_set, probs, state, likely_wrong=doubt[:5])


def test_curated_table_without_labels_or_paths(probs, state):
    images = ImageSet(name="bundled", images=np.zeros((6, 2, 2, 1), np.uint8),
                      ids=np.asarray([f"d/{i}" for i in range(6)]), paths=np.full(6, "", dtype="<U1"))
    table = curated_table(images, probs, state)
    assert "true_label" not in table.columns and table["path"].tolist() == [""] * 6


@pytest.mark.parametrize("bad, message", [
    (lambda p: p[:5], r"\(N, K\) with N = 6"),
    (lambda p: p[:, 0], r"\(N, K\)"),
    (lambda p: np.where(np.eye(6, 3, dtype=bool), np.nan, p), "NaN"),
])
def test_curated_table_refuses_bad_probs(folder_set, probs, state, bad, message):
    with pytest.raises(ValueError, match=message):
        curated_table(folder_set, bad(probs), state)


def test_curated_table_refuses_a_state_of_other_images(folder_set, probs, tmp_path):
    other = Curation(tmp_path, np.zeros(7, dtype=int)).state()
    with pytest.raises(ValueError, match="covers 7 images"):
        curated_table(folder_set, probs, other)


def test_csv_round_trip(table, tmp_path):
    export_csv(table, tmp_path / "out" / "labels.csv")
    back = pd.read_csv(tmp_path / "out" / "labels.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["labels.csv"]  # no temporary left


def test_json_rows_match_the_table(table, tmp_path):
    export_json(table, tmp_path / "labels.json")
    rows = json.loads((tmp_path / "labels.json").read_text())
    assert len(rows) == len(table)
    for row, expected in zip(rows, table.to_dict("records")):
        assert list(row) == list(table.columns)
        assert row.pop("confidence") == pytest.approx(expected.pop("confidence"), rel=1e-12)
        assert row == {k: v.item() if isinstance(v, np.generic) else v for k, v in expected.items()}


def test_json_has_no_nan(table, tmp_path):
    table = table.copy()
    table["extra"] = [np.nan, 1.0, 2.0, None, 4.0, 5.0]
    export_json(table, tmp_path / "labels.json")
    text = (tmp_path / "labels.json").read_text()
    assert "NaN" not in text
    rows = json.loads(text)
    assert rows[0]["extra"] is None and rows[3]["extra"] is None and rows[1]["extra"] == 1.0


def test_label_studio_predictions(table, tmp_path):
    export_label_studio(table, tmp_path / "ls.json")
    tasks = json.loads((tmp_path / "ls.json").read_text())
    assert len(tasks) == 6
    for task, row in zip(tasks, table.itertuples()):
        assert task["data"] == {"image": row.path, "scan_id": row.id}
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "scan-explorer"
        assert prediction["score"] == pytest.approx(row.confidence)
        assert prediction["result"] == [{"from_name": "choice", "to_name": "image", "type": "choices",
                                         "value": {"choices": [row.curated_label]}}]
    export_label_studio(table, tmp_path / "ls_url.json", image_root_url="http://host:8081/data/")
    images = [t["data"]["image"] for t in json.loads((tmp_path / "ls_url.json").read_text())]
    assert images[1] == "http://host:8081/data/b/img.png"
    assert images[3] == "http://host:8081/data/b/x3%20space.png"


def test_label_studio_needs_a_url_without_files(table, tmp_path):
    table = table.assign(path="")
    with pytest.raises(ValueError, match="6 images have no file path"):
        export_label_studio(table, tmp_path / "ls.json")
    assert not (tmp_path / "ls.json").exists()
    export_label_studio(table, tmp_path / "ls.json", image_root_url="http://h")
    assert json.loads((tmp_path / "ls.json").read_text())[0]["data"]["image"] == "http://h/a/x0.png"


def test_exports_refuse_a_foreign_table(tmp_path):
    for writer in (export_csv, export_json, export_label_studio):
        with pytest.raises(ValueError, match="lacks the columns"):
            writer(pd.DataFrame({"id": ["a"]}), tmp_path / "x")


def _files(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir())


def test_image_folder_copy(table, folder_set, tmp_path):
    out = tmp_path / "dataset"
    counts = export_image_folder(table, folder_set, out).counts
    assert counts == {"../evil": 1, "cat": 1, "cluster 1": 1, "cluster 2": 2}
    assert _files(out) == ["_evil/x3 space.png", "cat/x0.png", "cluster 1/x2.png",
                           "cluster 2/img.png", "cluster 2/img_1.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "run", "src"]  # nothing escaped
    src = tmp_path / "src"
    assert (out / "cluster 2/img.png").read_bytes() == (src / "b/img.png").read_bytes()
    assert (out / "cluster 2/img_1.png").read_bytes() == (src / "a/img.png").read_bytes()
    assert not any(p.is_symlink() for p in out.rglob("*"))


def test_image_folder_symlinks_and_outliers(table, folder_set, tmp_path):
    out = tmp_path / "links"
    out.mkdir()  # an existing empty folder is fine
    counts = export_image_folder(table, folder_set, out, mode="symlink", include_outliers=True).counts
    assert counts["cluster 2"] == 3 and sum(counts.values()) == 6
    link = out / "cluster 2" / "x5.png"
    assert link.is_symlink() and os.readlink(link) == str((tmp_path / "src/c/x5.png").resolve())
    assert np.array_equal(np.asarray(Image.open(link)), folder_set.images[5])
    assert all(p.is_symlink() for p in out.rglob("*.png"))


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder_writes_pngs_for_bundled_images(probs, state, tmp_path, channels):
    pixels = np.random.default_rng(2).integers(0, 256, (6, 5, 5, channels), dtype=np.uint8)
    images = ImageSet(name="bundled", images=pixels, ids=np.asarray([f"set/train/{i}" for i in range(6)]),
                      paths=np.full(6, "", dtype="<U1"))
    out = tmp_path / "pngs"
    counts = export_image_folder(curated_table(images, probs, state), images, out, mode="symlink").counts
    assert sum(counts.values()) == 5
    written = out / "cluster 1" / "set_train_2.png"
    back = np.asarray(Image.open(written))
    assert not written.is_symlink()
    assert np.array_equal(back, pixels[2, ..., 0] if channels == 1 else pixels[2])


def test_image_folder_falls_back_to_png_for_a_missing_file(table, folder_set, tmp_path):
    (tmp_path / "src" / "a" / "x0.png").unlink()
    export_image_folder(table, folder_set, tmp_path / "out")
    assert _files(tmp_path / "out" / "cat") == ["a_x0.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out/cat/a_x0.png")), folder_set.images[0])


def test_image_folder_keeps_labels_with_one_safe_name_apart(folder_set, probs, tmp_path):
    (tmp_path / "run").mkdir()
    cur = Curation(tmp_path / "run", BASE)
    for cluster, name in enumerate(["a/b", "a_b", "A_B"]):
        cur.name_cluster(cluster, name)
    out = tmp_path / "out"
    counts = export_image_folder(curated_table(folder_set, probs, cur.state()), folder_set, out).counts
    assert counts == {"A_B": 2, "a/b": 2, "a_b": 2}
    assert sorted(p.name for p in out.iterdir()) == ["A_B", "a_b_1", "a_b_2"]


def test_image_folder_refusals(table, folder_set, tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty folder"):
        export_image_folder(table, folder_set, out)
    assert _files(out) == ["keep.txt"]
    with pytest.raises(ValueError, match="not an empty folder"):
        export_image_folder(table, folder_set, out / "keep.txt")
    with pytest.raises(ValueError, match="mode"):
        export_image_folder(table, folder_set, tmp_path / "new", mode="hardlink")
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\)"):
        first_five = ImageSet(name="five", images=folder_set.images[:5], ids=folder_set.ids[:5],
                              paths=folder_set.paths[:5])
        export_image_folder(table, first_five, tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name, safe", [
    ("../evil", "_evil"), ("..", "unnamed"), ("", "unnamed"), ("   ", "unnamed"), ("a/b\\c", "a_b_c"),
    ("x\ny\x00z", "x_y_z"), ("  cat. ", "cat"), ("C:evil", "C_evil"), ("chat noir", "chat noir"),
    ("é" * 150, "é" * 100),
])
def test_safe_name(name, safe):
    assert safe_name(name) == safe


def test_csv_cells_that_a_spreadsheet_would_run_are_written_as_text(folder_set, probs, tmp_path):
    (tmp_path / "run2").mkdir()
    cur = Curation(tmp_path / "run2", BASE)
    cur.name_cluster(0, '=HYPERLINK("http://evil.example","x")')
    for image, label in ((3, "+1+2"), (4, "@SUM(A1)"), (5, "-2+3")):
        cur.relabel([image], label)
    export_csv(curated_table(folder_set, probs, cur.state()), tmp_path / "labels.csv")
    with open(tmp_path / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["cluster_name"] == rows[0]["curated_label"] == '\'=HYPERLINK("http://evil.example","x")'
    assert [rows[i]["curated_label"] for i in (3, 4, 5)] == ["'+1+2", "'@SUM(A1)", "'-2+3"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())
    assert float(rows[1]["confidence"]) == pytest.approx(probs[1].max())  # numbers stay numbers


@pytest.mark.parametrize("name, safe", [
    ('=HYPERLINK("x")', '_HYPERLINK(_x_)'), ("+cmd", "_cmd"), ("@a", "_a"), ("abc\u202egpj.exe", "abc_gpj.exe"),
])
def test_folder_names_are_neither_formulas_nor_reordered(name, safe):
    assert safe_name(name) == safe


def _folder_files(out) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if not p.is_dir()}


def _zip_files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize("include_outliers", [False, True])
def test_image_folder_zip_holds_what_export_image_folder_writes(table, folder_set, tmp_path, include_outliers):
    (tmp_path / "src" / "a" / "x0.png").unlink()  # written from its pixels
    os.utime(tmp_path / "src" / "b" / "img.png", (0, 0))  # 1970: older than the zip format allows
    work = tmp_path / "exports"
    data = image_folder_zip(table, folder_set, include_outliers, workdir=work)
    export_image_folder(table, folder_set, tmp_path / "out", include_outliers=include_outliers)
    files = _zip_files(data)
    assert files == _folder_files(tmp_path / "out")
    assert len(files) == (6 if include_outliers else 5) and "cluster 2/img_1.png" in files
    assert files["cluster 2/img.png"] == (tmp_path / "src" / "b" / "img.png").read_bytes()  # the file, not a link
    assert list(work.iterdir()) == []  # its temporary folder is gone


def test_image_folder_paths_say_where_each_row_goes(table, folder_set, tmp_path):
    export_image_folder(table, folder_set, tmp_path / "out")
    paths = image_folder_paths(table)
    assert paths.index.tolist() == [0, 1, 2, 3, 4]  # not the outlier
    assert paths[1] == "cluster 2/img.png" and paths[4] == "cluster 2/img_1.png"
    assert sorted(paths) == _files(tmp_path / "out")
    assert len(image_folder_paths(table, include_outliers=True)) == 6


def test_label_studio_points_at_a_served_image_folder(probs, state, tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    images = ImageSet(name="bundled", images=pixels, ids=np.asarray([f"set/train/{i}" for i in range(6)]),
                      paths=np.full(6, "", dtype="<U1"))
    table = curated_table(images, probs, state)
    prefix = "http://localhost:8081/"
    export_label_studio(table, tmp_path / "ls.json", image_root_url=prefix, serves_image_folder=True)
    export_image_folder(table, images, tmp_path / "served", include_outliers=True)
    urls = [task["data"]["image"] for task in json.loads((tmp_path / "ls.json").read_text())]
    assert urls[1] == "http://localhost:8081/cluster%202/set_train_1.png"
    for url, image in zip(urls, pixels):  # every task, the outlier too, finds its image there
        served = tmp_path / "served" / unquote(url.removeprefix(prefix))
        assert np.array_equal(np.asarray(Image.open(served)), image)
    with pytest.raises(ValueError, match="serves_image_folder needs image_root_url"):
        export_label_studio(table, tmp_path / "ls2.json", serves_image_folder=True)


def test_exports_streamed_two_rows_at_a_time_write_what_the_whole_table_writes(folder_set, probs, state, table,
                                                                              tmp_path, monkeypatch):
    monkeypatch.setattr(export, "CHUNK_ROWS", 2)
    rows = CuratedRows(folder_set, probs, state)
    assert [len(chunk) for chunk in rows.chunks()] == [2, 2, 2]
    assert rows.curated_labels() == sorted(set(table["curated_label"]))
    assert rows.curated_labels(include_outliers=False) == sorted(set(table["curated_label"][~table["outlier"]]))
    writers = {"csv": export_csv, "json": export_json,
               "ls.json": lambda given, path, **kw: export_label_studio(given, path, "http://h/", True, **kw)}
    for suffix, write in writers.items():
        seen = []
        write(rows, tmp_path / f"streamed.{suffix}", on_progress=lambda done, total: seen.append((done, total)))
        write(table, tmp_path / f"whole.{suffix}")
        assert seen == [(2, 6), (4, 6), (6, 6)], suffix
        assert (tmp_path / f"streamed.{suffix}").read_bytes() == (tmp_path / f"whole.{suffix}").read_bytes(), suffix
    for name, given in (("streamed", rows), ("whole", table)):
        export_image_folder(given, folder_set, tmp_path / f"{name}-folder", include_outliers=True)
    listing = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert listing(tmp_path / "streamed-folder") == listing(tmp_path / "whole-folder")
    assert len([p for p in (tmp_path / "whole-folder").rglob("*") if p.is_file()]) == 6


def test_an_export_that_fails_midway_leaves_no_file(folder_set, probs, state, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "CHUNK_ROWS", 2)
    rows = CuratedRows(folder_set, probs, state)

    def stop(done: int, total: int) -> None:
        if done == 4:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="cannot write .*labels.csv: No space left on device"):
        export_csv(rows, tmp_path / "labels.csv", on_progress=stop)
    assert not [p for p in tmp_path.iterdir() if "labels.csv" in p.name]


def test_image_folder_writes_duplicates_with_their_twins_label_and_names_what_it_left_out(tmp_path, monkeypatch):
    """A folder loaded by the image loader: two copies of one image and one of another (skipped at
    load as duplicates) go beside their twin under their own name, in its label's folder; the image
    over the pixel limit is named as left out, as is the copy of an image flagged as outlier."""
    from scan_core.data.sources import load_source
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000)
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (4, 20, 20, 3), dtype=np.uint8)
    for name, k in [("a.png", 0), ("b.png", 1), ("c.png", 2), ("d.png", 3), ("e copy of a.png", 0), ("f copy of a.bmp", 0),
                    ("g copy of d.png", 3)]:
        Image.fromarray(pixels[k]).save(src / name)
    Image.new("RGB", (60, 60)).save(src / "huge.png")  # 3,600 pixels: over the limit
    images = load_source(str(src))
    assert images.ids.tolist() == ["a.png", "b.png", "c.png", "d.png"] and len(images.skipped) == 4
    (tmp_path / "run").mkdir()
    cur = Curation(tmp_path / "run", np.array([0, 0, 1, 1]))
    cur.name_cluster(0, "kept")
    cur.mark_outliers([3])  # d.png: outliers are not written, nor is its copy
    rows = CuratedRows(images, np.full((4, 2), 0.5), cur.state())
    result = export_image_folder(rows, images, tmp_path / "out")
    assert result.counts == {"cluster 1": 1, "kept": 4} and result.written == 5 and result.duplicates == 2
    assert _files(tmp_path / "out") == ["cluster 1/c.png", "kept/a.png", "kept/b.png", "kept/e copy of a.png",
                                        "kept/f copy of a.bmp"]
    assert (tmp_path / "out/kept/f copy of a.bmp").read_bytes() == (src / "f copy of a.bmp").read_bytes()
    assert [(o.path, o.reason.split(":")[0]) for o in result.left_out] == [("g copy of d.png", "duplicate of d.png"),
                                                                          ("huge.png", "image too large")]
