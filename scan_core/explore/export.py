"""Leave with a labelled dataset: the curated table and its exports.

:func:`curated_table` joins an :class:`ImageSet`, the model's probabilities and a
:class:`CuratedState` into one row per image; the ``export_*`` functions write that table as CSV,
JSON, Label Studio predictions (pre-annotations to review in Label Studio) or a folder per label
(``out_dir/<label>/<file>``, the layout image-folder loaders read), which :func:`image_folder_zip`
also packs as a .zip to download. Every file is written atomically (temporary file, then rename).
"""
from __future__ import annotations

import io
import json
import os
import secrets
import tempfile
import unicodedata
import zipfile
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
from PIL import Image

from ..data.artifacts import save_bytes
from ..data.images import ImageSet
from .curation import CuratedState

COLUMNS = ("index", "id", "path", "cluster", "cluster_name", "confidence", "curated_label", "outlier", "reviewed")
MODEL_VERSION = "scan-explorer"
MAX_NAME = 100
_UNSAFE = set('/\\:*?"<>|')
#: A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection"): such
#: text cells are written with a leading apostrophe, which spreadsheets show as text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def curated_table(images: ImageSet, probs: np.ndarray, state: CuratedState,
                  likely_wrong: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image: :data:`COLUMNS`, then ``likely_wrong`` when given, then ``true_label``
    (class name) when ``images`` is labelled.

    ``probs`` ``(N, K)`` are the model's; ``confidence`` is ``probs.max(1)`` even for images a
    human moved to another cluster. ``path`` is ``""`` and ``cluster_name`` ``""`` when absent.
    ``reviewed``: the user accepted or moved the image one by one. ``likely_wrong`` ``(N,)`` in
    [0, 1]: how much the image's neighbours vote against its curated cluster
    (:attr:`scan_core.explore.review.ReviewQueue.likely_wrong`).
    """
    probs = np.asarray(probs)
    n = len(images)
    if probs.ndim != 2 or len(probs) != n:
        raise ValueError(f"probs must be (N, K) with N = {n} images, got shape {probs.shape}")
    if len(state.clusters) != n:
        raise ValueError(f"the curated state covers {len(state.clusters)} images, the image set {n}")
    if not np.isfinite(probs).all():
        raise ValueError("probs contain NaN or infinity")
    if likely_wrong is not None and np.shape(likely_wrong) != (n,):
        raise ValueError(f"likely_wrong must be (N,) with N = {n} images, got shape {np.shape(likely_wrong)}")
    outliers, reviewed = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    outliers[list(state.outliers)] = True
    reviewed[list(state.reviewed)] = True
    table = pd.DataFrame({
        "index": np.arange(n),
        "id": [str(i) for i in images.ids],
        "path": ["" if p is None else str(p) for p in images.paths],
        "cluster": np.asarray(state.clusters, dtype=np.int64),
        "cluster_name": [state.names.get(int(c), "") for c in state.clusters],
        "confidence": probs.max(1).astype(np.float64),
        "curated_label": state.labels(),
        "outlier": outliers,
        "reviewed": reviewed,
    })
    if likely_wrong is not None:
        table["likely_wrong"] = np.round(np.asarray(likely_wrong, dtype=np.float64), 4)
    if images.labels is not None:
        table["true_label"] = np.asarray(images.class_names, dtype=object)[images.labels]
    return table


def export_csv(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` as CSV (header row, no pandas index); a text cell that a spreadsheet would
    run as a formula (:data:`FORMULA_START`) gets a leading ``'``."""
    _check_table(table)
    defused = table.copy()
    for column in defused.columns:
        if not pd.api.types.is_numeric_dtype(defused[column]) and not pd.api.types.is_bool_dtype(defused[column]):
            defused[column] = [f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_START) else v
                               for v in defused[column]]
    save_bytes(Path(path), defused.to_csv(index=False).encode())


def export_json(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` as a JSON list of row objects (missing values as ``null``, never NaN)."""
    _check_table(table)
    _save_json(Path(path), _records(table))


def export_label_studio(table: pd.DataFrame, path: Path, image_root_url: str | None = None,
                        serves_image_folder: bool = False) -> None:
    """Write Label Studio tasks with the curated label as a prediction (pre-annotation).

    Each task is ``{"data": {"image", "scan_id"}, "predictions": [{"model_version", "score",
    "result": [choices]}]}`` for a labelling config with ``<Image name="image" value="$image"/>``
    and ``<Choices name="choice" toName="image">``. The image is ``image_root_url/<quoted id>``
    when a root URL is given (ids of a folder source are paths relative to the folder), else the
    row's file path; rows without either are refused. With ``serves_image_folder`` the root URL
    serves :func:`export_image_folder` of this same table with outliers included (the only place
    bundled images, which have no file, exist as files), and the image is
    ``image_root_url/<quoted label folder/file>`` there.
    """
    _check_table(table)
    tasks = []
    for row, image in zip(_records(table), _task_images(table, image_root_url, serves_image_folder)):
        tasks.append({
            "data": {"image": image, "scan_id": row["id"]},
            "predictions": [{
                "model_version": MODEL_VERSION, "score": row["confidence"],
                "result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                            "value": {"choices": [row["curated_label"]]}}],
            }],
        })
    _save_json(Path(path), tasks)


def _task_images(table: pd.DataFrame, image_root_url: str | None, serves_image_folder: bool) -> list[str]:
    """Each row's Label Studio image (see :func:`export_label_studio`)."""
    if image_root_url is None:
        if serves_image_folder:
            raise ValueError("serves_image_folder needs image_root_url, the URL the image folder is served at")
        missing = table["id"][table["path"].astype(str) == ""]
        if len(missing):
            raise ValueError(f"{len(missing)} images have no file path (e.g. {missing.iloc[0]!r}); "
                             "give image_root_url to point Label Studio at them")
        return table["path"].astype(str).tolist()
    names = image_folder_paths(table, include_outliers=True) if serves_image_folder else table["id"].astype(str)
    return [f"{image_root_url.rstrip('/')}/{quote(name)}" for name in names]


def export_image_folder(table: pd.DataFrame, images: ImageSet, out_dir: Path, mode: str = "copy",
                        include_outliers: bool = False) -> dict[str, int]:
    """Write ``out_dir/<label folder>/<file>`` for every row (outliers only if ``include_outliers``).

    A row whose ``path`` is an existing file is copied (``mode="copy"``) or symlinked
    (``mode="symlink"``, absolute target) under its own file name; any other row is written as
    ``<safe id>.png`` from ``images.images[index]``. Label folders are :func:`safe_name` of the curated
    label (two labels with the same safe name get distinct folders); clashing file names get
    ``_1``, ``_2``... suffixes (:func:`image_folder_paths` says where each row goes). ``out_dir``
    must not exist or be empty. Returns images per label.
    """
    _check_table(table)
    if mode not in ("copy", "symlink"):
        raise ValueError(f"mode must be 'copy' or 'symlink', got {mode!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"{out_dir} exists and is not an empty folder; choose a new output folder")
    indices = table["index"].to_numpy()
    if len(indices) and (indices.min() < 0 or indices.max() >= len(images)):
        raise ValueError(f"table indices must lie in [0, {len(images)}) of the image set")
    rows = _kept_rows(table, include_outliers)
    counts: dict[str, int] = {}
    for index, label, (relative, source) in zip(rows["index"], rows["curated_label"], _placements(rows)):
        target = out_dir / relative
        if source is None:
            save_bytes(target, _png(images.images[int(index)]))
        elif mode == "copy":
            save_bytes(target, source.read_bytes())
        else:
            _atomic_symlink(source.resolve(), target)
        counts[str(label)] = counts.get(str(label), 0) + 1
    return dict(sorted(counts.items()))


def image_folder_paths(table: pd.DataFrame, include_outliers: bool = False) -> pd.Series:
    """Where :func:`export_image_folder` writes each row it keeps: ``"<label folder>/<file name>"``,
    indexed like ``table``'s rows (outliers only if ``include_outliers``)."""
    _check_table(table)
    rows = _kept_rows(table, include_outliers)
    return pd.Series([relative for relative, _ in _placements(rows)], index=rows.index, dtype=object)


def image_folder_zip(table: pd.DataFrame, images: ImageSet, include_outliers: bool = False,
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
        export_image_folder(table, images, root, mode="symlink", include_outliers=include_outliers)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED, strict_timestamps=False) as archive:
            for file in sorted(p for p in root.rglob("*") if not p.is_dir()):
                archive.write(file, file.relative_to(root).as_posix())
    return buffer.getvalue()


def _kept_rows(table: pd.DataFrame, include_outliers: bool) -> pd.DataFrame:
    """The rows an ImageFolder holds: all, or all but the outliers."""
    return table if include_outliers else table[~table["outlier"].astype(bool)]


def _placements(rows: pd.DataFrame) -> list[tuple[str, Path | None]]:
    """Per row, its ImageFolder path ``"<label folder>/<file name>"`` and the source file to copy,
    None for a row written from its pixels (no ``path``, or not an existing file)."""
    taken: set[str] = set()  # distinct folders even for labels with one safe name, or differing in case only
    folders = {label: _free_name(safe_name(label), taken) for label in sorted(set(rows["curated_label"].astype(str)))}
    used: dict[str, set[str]] = {}
    placements = []
    for image_id, path, label in zip(rows["id"], rows["path"], rows["curated_label"]):
        folder = folders[str(label)]
        source = Path(str(path)) if str(path) and Path(str(path)).is_file() else None
        name = safe_name(source.name) if source is not None else _png_name(str(image_id))
        placements.append((f"{folder}/{_free_name(name, used.setdefault(folder, set()))}", source))
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


def _save_json(path: Path, obj: object) -> None:
    save_bytes(path, json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False).encode())


def _check_table(table: pd.DataFrame) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"table must be a pandas DataFrame from curated_table, got {type(table).__name__}")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the columns {missing}; build it with curated_table")
