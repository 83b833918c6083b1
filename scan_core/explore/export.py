"""Leave with a labelled dataset: the curated table and its exports.

:class:`CuratedRows` joins an :class:`ImageSet`, the model's probabilities and a
:class:`CuratedState` into one row per image, built a chunk at a time; the ``export_*`` functions
stream those rows to disk as CSV, JSON, Label Studio predictions (pre-annotations to review in
Label Studio) or a folder per label (``out_dir/<label>/<file>``, the layout image-folder loaders
read), which :func:`image_folder_zip` also packs as a .zip to download. They take a whole table
(:func:`curated_table`) too, report their progress (``on_progress(rows done, rows)``) and write
every file atomically (a temporary file, renamed when complete).
"""
from __future__ import annotations

import io
import json
import os
import secrets
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias
from urllib.parse import quote

import numpy as np
import pandas as pd
from PIL import Image

from ..data.artifacts import atomic_file, save_bytes
from ..data.images import ImageSet
from .curation import CuratedState, cluster_label

COLUMNS = ("index", "id", "path", "cluster", "cluster_name", "confidence", "curated_label", "outlier", "reviewed")
MODEL_VERSION = "scan-explorer"
MAX_NAME = 100
_UNSAFE = set('/\\:*?"<>|')
#: A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection"): such
#: text cells are written with a leading apostrophe, which spreadsheets show as text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


CHUNK_ROWS = 50_000  # rows an export builds and writes at a time
DUPLICATE_OF = "duplicate of "  # the reason the image loader gives a skipped copy of an earlier image, then its id


@dataclass(frozen=True, eq=False)
class CuratedRows:
    """The curated table of a run, one row per image (:func:`curated_table`), built
    :data:`CHUNK_ROWS` rows at a time: what the exports stream to disk, so that none of them holds
    every row of a million-image run at once.

    ``probs`` ``(N, K)`` are the model's; ``confidence`` is ``probs.max(1)`` even for images a
    human moved to another cluster. ``likely_wrong`` ``(N,)`` in [0, 1]: how much the image's
    neighbours vote against its curated cluster (:attr:`scan_core.explore.review.ReviewQueue.likely_wrong`).
    """

    images: ImageSet
    probs: np.ndarray
    state: CuratedState
    likely_wrong: np.ndarray | None = None

    def __post_init__(self) -> None:
        probs, n = np.asarray(self.probs), len(self.images)
        if probs.ndim != 2 or len(probs) != n:
            raise ValueError(f"probs must be (N, K) with N = {n} images, got shape {probs.shape}")
        if len(self.state.clusters) != n:
            raise ValueError(f"the curated state covers {len(self.state.clusters)} images, the image set {n}")
        if not np.isfinite(probs).all():
            raise ValueError("probs contain NaN or infinity")
        if self.likely_wrong is not None and np.shape(self.likely_wrong) != (n,):
            raise ValueError(f"likely_wrong must be (N,) with N = {n} images, got shape {np.shape(self.likely_wrong)}")

    def __len__(self) -> int:
        return len(self.images)

    def rows(self, start: int, stop: int) -> pd.DataFrame:
        """Rows ``start`` to ``stop`` (:data:`COLUMNS`, then ``likely_wrong`` when given, then
        ``true_label`` when the images are labelled); ``path`` and ``cluster_name`` are ``""`` when absent."""
        state, images, span = self.state, self.images, slice(start, stop)
        clusters = np.asarray(state.clusters[span], dtype=np.int64)
        names = np.array([state.names.get(c, "") for c in range(state.num_cluster_ids)], dtype=object)
        table = pd.DataFrame({
            "index": np.arange(start, min(stop, len(self))),
            "id": [str(i) for i in images.ids[span]],
            "path": ["" if p is None else str(p) for p in images.paths[span]],
            "cluster": clusters,
            "cluster_name": names[clusters],
            "confidence": np.asarray(self.probs[span]).max(1).astype(np.float64),
            "curated_label": state.labels(span),
            "outlier": state.outliers.mask[span],
            "reviewed": state.reviewed.mask[span],
        })
        if self.likely_wrong is not None:
            table["likely_wrong"] = np.round(np.asarray(self.likely_wrong[span], dtype=np.float64), 4)
        if images.labels is not None:
            table["true_label"] = np.asarray(images.class_names, dtype=object)[images.labels[span]]
        return table

    def chunks(self, size: int | None = None) -> Iterator[pd.DataFrame]:
        """Every row, ``size`` (:data:`CHUNK_ROWS`) at a time, in order."""
        size = size or CHUNK_ROWS
        for start in range(0, len(self), size):
            yield self.rows(start, start + size)

    def curated_labels(self, include_outliers: bool = True) -> list[str]:
        """The distinct curated labels of the rows (but the outliers', unless ``include_outliers``),
        sorted, from the curated state's arrays."""
        state = self.state
        kept = np.ones(len(self), bool) if include_outliers else ~state.outliers.mask
        own = state.label_of >= 0
        clusters = np.unique(state.clusters[kept & ~own])
        labels = {state.names.get(int(c), cluster_label(int(c))) for c in clusters}
        return sorted(labels | {state.label_names[i] for i in np.unique(state.label_of[kept & own])})


#: What the exports take: the whole table, or the curated rows of a run to stream.
Rows: TypeAlias = pd.DataFrame | CuratedRows
Progress: TypeAlias = Callable[[int, int], None] | None  # (rows done, rows in all)


def curated_table(images: ImageSet, probs: np.ndarray, state: CuratedState,
                  likely_wrong: np.ndarray | None = None) -> pd.DataFrame:
    """Every row of :class:`CuratedRows` as one table (a small run's, or a test's)."""
    rows = CuratedRows(images, probs, state, likely_wrong)
    return rows.rows(0, len(rows))


def _chunks(rows: Rows, on_progress: Progress = None) -> Iterator[pd.DataFrame]:
    """The chunks of ``rows`` (a whole table is one), ``on_progress(done, total)`` after each."""
    if not isinstance(rows, CuratedRows):
        _check_table(rows)
    parts = rows.chunks() if isinstance(rows, CuratedRows) else iter([rows])
    done = 0
    for part in parts:
        yield part
        done += len(part)
        if on_progress is not None:
            on_progress(done, len(rows))


def export_csv(rows: Rows, path: Path, on_progress: Progress = None) -> None:
    """Write ``rows`` as CSV (header row, no pandas index), a chunk at a time; a text cell that a
    spreadsheet would run as a formula (:data:`FORMULA_START`) gets a leading ``'``."""
    with atomic_file(path) as handle:
        for number, chunk in enumerate(_chunks(rows, on_progress)):
            defused = chunk.copy()
            for column in defused.columns:
                if not pd.api.types.is_numeric_dtype(defused[column]) and not pd.api.types.is_bool_dtype(defused[column]):
                    defused[column] = [f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_START) else v
                                       for v in defused[column]]
            handle.write(defused.to_csv(index=False, header=number == 0).encode())


def export_json(rows: Rows, path: Path, on_progress: Progress = None) -> None:
    """Write ``rows`` as a JSON list of row objects, one a line (missing values as ``null``, never NaN)."""
    _write_json_list(path, (record for chunk in _chunks(rows, on_progress) for record in _records(chunk)))


def export_label_studio(rows: Rows, path: Path, image_root_url: str | None = None,
                        serves_image_folder: bool = False, on_progress: Progress = None) -> None:
    """Write Label Studio tasks with the curated label as a prediction (pre-annotation).

    Each task is ``{"data": {"image", "scan_id"}, "predictions": [{"model_version", "score",
    "result": [choices]}]}`` for a labelling config with ``<Image name="image" value="$image"/>``
    and ``<Choices name="choice" toName="image">``. The image is ``image_root_url/<quoted id>``
    when a root URL is given (ids of a folder source are paths relative to the folder), else the
    row's file path; rows without either are refused. With ``serves_image_folder`` the root URL
    serves :func:`export_image_folder` of these same rows with outliers included (the only place
    bundled images, which have no file, exist as files), and the image is
    ``image_root_url/<quoted label folder/file>`` there.
    """
    if serves_image_folder and image_root_url is None:
        raise ValueError("serves_image_folder needs image_root_url, the URL the image folder is served at")
    if image_root_url is None:  # refused before a file is made, from the ids and paths alone
        if isinstance(rows, CuratedRows):
            ids, paths = rows.images.ids, rows.images.paths
        else:
            _check_table(rows)
            ids, paths = rows["id"], rows["path"]
        missing = [image_id for image_id, path in zip(ids, paths) if path is None or str(path) == ""]
        if missing:
            raise ValueError(f"{len(missing)} images have no file path (e.g. {str(missing[0])!r}); "
                             "give image_root_url to point Label Studio at them")
    folders = _Placements(rows, include_outliers=True) if serves_image_folder else None

    def tasks() -> Iterator[dict]:
        for chunk in _chunks(rows, on_progress):
            if image_root_url is None:
                images = chunk["path"].astype(str).tolist()
            else:
                names = [relative for relative, _ in folders.place(chunk)] if folders else chunk["id"].astype(str)
                images = [f"{image_root_url.rstrip('/')}/{quote(name)}" for name in names]
            for row, image in zip(_records(chunk), images):
                yield {"data": {"image": image, "scan_id": row["id"]},
                       "predictions": [{"model_version": MODEL_VERSION, "score": row["confidence"],
                                        "result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                                                    "value": {"choices": [row["curated_label"]]}}]}]}

    _write_json_list(path, tasks())


@dataclass(frozen=True)
class LeftOut:
    """A file of the source that an export does not hold: its path in the source and why (the
    reason the image loader recorded when it skipped the file)."""
    path: str
    reason: str


@dataclass(frozen=True)
class ImageFolderExport:
    """What :func:`export_image_folder` wrote: files per curated label (``counts``, the duplicates
    included), how many of them are duplicates the loader skipped, written beside their twin with
    its label (``duplicates``), and the source's files it holds none of (``left_out``)."""
    counts: dict[str, int]
    duplicates: int
    left_out: tuple[LeftOut, ...]

    @property
    def written(self) -> int:
        return sum(self.counts.values())


def duplicates_by_twin(images: ImageSet) -> tuple[dict[int, list[str]], list[LeftOut]]:
    """The files the image loader skipped (``images.skipped``): the exact duplicates as ``{index of
    the image kept: [the duplicates' source paths]}``, and the others (unreadable, too large, outside
    the folder...) as :class:`LeftOut`. A duplicate's path is its twin's with the twin's id (its path
    relative to the source folder) replaced by the duplicate's; one whose twin is unknown is left out."""
    index_of = {str(image_id): i for i, image_id in enumerate(images.ids)}
    twins: dict[int, list[str]] = {}
    others: list[LeftOut] = []
    for entry in images.skipped:
        path, reason = str(entry.get("path", "")), str(entry.get("reason", ""))
        twin = index_of.get(reason.removeprefix(DUPLICATE_OF)) if reason.startswith(DUPLICATE_OF) else None
        twin_path = str(images.paths[twin]) if twin is not None else ""
        twin_id = str(images.ids[twin]) if twin is not None else ""
        if twin is None or not twin_path.endswith(twin_id):
            others.append(LeftOut(path, reason))
            continue
        twins.setdefault(twin, []).append(twin_path[: len(twin_path) - len(twin_id)] + path)
    return twins, others


def export_image_folder(rows: Rows, images: ImageSet, out_dir: Path, mode: str = "copy",
                        include_outliers: bool = False, on_progress: Progress = None) -> ImageFolderExport:
    """Write ``out_dir/<label folder>/<file>`` for every row (outliers only if ``include_outliers``),
    a chunk of rows at a time.

    A row whose ``path`` is an existing file is copied (``mode="copy"``) or symlinked
    (``mode="symlink"``, absolute target) under its own file name; any other row is written as
    ``<safe id>.png`` from ``images.images[index]``. Label folders are :func:`safe_name` of the curated
    label (two labels with the same safe name get distinct folders); clashing file names get
    ``_1``, ``_2``... suffixes (:func:`image_folder_paths` says where each row goes). The exact
    duplicates the image loader skipped go beside their twin, with its label, under their own file
    name (:func:`duplicates_by_twin`); the other skipped files, and the duplicates of an image not
    written, are named in the result's ``left_out``. ``out_dir`` must not exist or be empty.
    """
    if mode not in ("copy", "symlink"):
        raise ValueError(f"mode must be 'copy' or 'symlink', got {mode!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"{out_dir} exists and is not an empty folder; choose a new output folder")
    if not isinstance(rows, CuratedRows):
        _check_table(rows)
        indices = rows["index"].to_numpy()
        if len(indices) and (indices.min() < 0 or indices.max() >= len(images)):
            raise ValueError(f"table indices must lie in [0, {len(images)}) of the image set")
    places = _Placements(rows, include_outliers)
    twins, left_out = duplicates_by_twin(images)
    counts: dict[str, int] = {}
    duplicates = 0

    def write(target: Path, source: Path | None, index: int) -> None:
        if source is None:
            save_bytes(target, _png(images.images[index]))
        elif mode == "copy":
            save_bytes(target, source.read_bytes())
        else:
            _atomic_symlink(source.resolve(), target)

    for chunk in _chunks(rows, on_progress):
        kept = _kept_rows(chunk, include_outliers)
        for index, label, (relative, source) in zip(kept["index"], kept["curated_label"], places.place(kept)):
            write(out_dir / relative, source, int(index))
            copies = twins.pop(int(index), [])
            for copy in copies:  # the twin's pixels when the duplicate's own file is gone
                folder, file = relative.rsplit("/", 1)[0], Path(copy)
                name = safe_name(file.name) if file.is_file() else Path(relative).name
                write(out_dir / folder / _free_name(name, places.used[folder]), file if file.is_file() else source,
                      int(index))
            counts[str(label)] = counts.get(str(label), 0) + 1 + len(copies)
            duplicates += len(copies)
    by_index = dict(zip(map(str, images.ids), range(len(images))))
    left_out += [LeftOut(entry["path"], entry["reason"]) for entry in images.skipped
                 if by_index.get(str(entry.get("reason", "")).removeprefix(DUPLICATE_OF)) in twins]
    return ImageFolderExport(dict(sorted(counts.items())), duplicates, tuple(sorted(left_out, key=lambda o: o.path)))


def image_folder_paths(table: pd.DataFrame, include_outliers: bool = False) -> pd.Series:
    """Where :func:`export_image_folder` writes each row it keeps: ``"<label folder>/<file name>"``,
    indexed like ``table``'s rows (outliers only if ``include_outliers``)."""
    _check_table(table)
    rows = _kept_rows(table, include_outliers)
    placed = _Placements(table, include_outliers).place(rows)
    return pd.Series([relative for relative, _ in placed], index=rows.index, dtype=object)


def image_folder_zip(rows: Rows, images: ImageSet, include_outliers: bool = False,
                     workdir: Path | None = None) -> bytes:
    """:func:`export_image_folder`'s folder as .zip bytes: one entry per file it writes, named
    ``<label folder>/<file name>`` as there, holding the image itself.

    The folder is written first as symlinks (no copy of a source file) into a temporary folder
    under ``workdir`` (the system's when None), removed afterwards. Entries are stored, not
    deflated: images are compressed already. Files dated before 1980 get the zip format's
    earliest date instead of an error.
    """
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix=".imagefolder-", dir=workdir) as tmp:
        root = Path(tmp)
        export_image_folder(rows, images, root, mode="symlink", include_outliers=include_outliers)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED, strict_timestamps=False) as archive:
            for file in sorted(p for p in root.rglob("*") if not p.is_dir()):
                archive.write(file, file.relative_to(root).as_posix())
    return buffer.getvalue()


def _kept_rows(table: pd.DataFrame, include_outliers: bool) -> pd.DataFrame:
    """The rows an ImageFolder holds: all, or all but the outliers."""
    return table if include_outliers else table[~table["outlier"].astype(bool)]


class _Placements:
    """Where the rows of an ImageFolder go, chunk after chunk: a folder per curated label (distinct
    even for labels with one safe name, or differing in case only; given in label order, so that
    it does not depend on the chunks) and a file name free in that folder."""

    def __init__(self, rows: Rows, include_outliers: bool):
        labels = (rows.curated_labels(include_outliers) if isinstance(rows, CuratedRows) else
                  sorted(set(_kept_rows(rows, include_outliers)["curated_label"].astype(str))))
        taken: set[str] = set()
        self.folders = {label: _free_name(safe_name(label), taken) for label in labels}
        self.used: dict[str, set[str]] = {}

    def place(self, rows: pd.DataFrame) -> list[tuple[str, Path | None]]:
        """Per row, its path ``"<label folder>/<file name>"`` and the source file to copy, None for
        a row written from its pixels (no ``path``, or not an existing file)."""
        placements = []
        for image_id, path, label in zip(rows["id"], rows["path"], rows["curated_label"]):
            folder = self.folders[str(label)]
            source = Path(str(path)) if str(path) and Path(str(path)).is_file() else None
            name = safe_name(source.name) if source is not None else _png_name(str(image_id))
            placements.append((f"{folder}/{_free_name(name, self.used.setdefault(folder, set()))}", source))
        return placements


def safe_name(name: str) -> str:
    """A single path component from ``name``: separators, ``:*?"<>|``, control and invisible format
    characters (a right-to-left override among them) become ``_``, as does a leading formula
    character (``=+-@``); leading/trailing spaces and dots go, at most :data:`MAX_NAME` characters;
    ``"unnamed"`` when nothing is left (so ``"../evil"`` -> ``"_evil"``)."""
    cleaned = "".join("_" if c in _UNSAFE or unicodedata.category(c) in ("Cc", "Cf") else c for c in str(name))
    cleaned = cleaned.strip(" .")[:MAX_NAME].strip(" .")
    if cleaned.startswith(FORMULA_START):
        cleaned = "_" + cleaned[1:]
    return cleaned or "unnamed"


def _free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem_1.ext``, ``stem_2.ext``... the first not in ``taken`` (case-insensitive); recorded."""
    stem, dot, ext = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    candidate, number = name, 0
    while candidate.casefold() in taken:
        number += 1
        candidate = f"{stem}_{number}{dot}{ext}"
    taken.add(candidate.casefold())
    return candidate


def _png_name(image_id: str) -> str:
    """File name for an image written from pixels: ``set/train/7`` -> ``set_train_7.png``."""
    name = safe_name(image_id)
    return name if name.casefold().endswith(".png") else f"{name}.png"


def _png(image: np.ndarray) -> bytes:
    """PNG bytes of one ``(H, W, C)`` uint8 image (C in 1, 3)."""
    array = np.asarray(image)
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()


def _atomic_symlink(source: Path, target: Path) -> None:
    """Create ``target -> source`` atomically (a temporary link renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
    os.symlink(source, tmp)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as plain-Python dicts, missing values as None."""
    return json.loads(table.to_json(orient="records", double_precision=15))


def _write_json_list(path: Path, items: Iterator[object]) -> None:
    """A JSON list at ``path``, one item a line, written as the items come."""
    with atomic_file(path) as handle:
        handle.write(b"[")
        for number, item in enumerate(items):
            text = json.dumps(item, ensure_ascii=False, allow_nan=False)
            handle.write(((",\n" if number else "\n") + text).encode())
        handle.write(b"\n]\n")


def _check_table(table: pd.DataFrame) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"table must be a pandas DataFrame from curated_table, got {type(table).__name__}")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the columns {missing}; build it with curated_table")
