"""Leave with a labelled dataset: the curated table and its exports.

:func:`curated_table` joins an :class:`ImageSet`, the model's probabilities and a
:class:`CuratedState` into one row per image; the ``export_*`` functions write that table as CSV,
JSON, Label Studio predictions (pre-annotations to review in Label Studio) or a folder per label
(``out_dir/<label>/<file>``, the layout image-folder loaders read). Every file is written
atomically (temporary file, then rename).
"""
from __future__ import annotations

import io
import json
import os
import secrets
import unicodedata
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
from PIL import Image

from ..data.artifacts import save_bytes
from ..data.images import ImageSet
from .curation import CuratedState

COLUMNS = ("index", "id", "path", "cluster", "cluster_name", "confidence", "curated_label", "outlier")
MODEL_VERSION = "scan-explorer"
MAX_NAME = 100
_UNSAFE = set('/\\:*?"<>|')
#: A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection"): such
#: text cells are written with a leading apostrophe, which spreadsheets show as text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def curated_table(images: ImageSet, probs: np.ndarray, state: CuratedState) -> pd.DataFrame:
    """One row per image: :data:`COLUMNS`, plus ``true_label`` (class name) when ``images`` is labelled.

    ``probs`` ``(N, K)`` are the model's; ``confidence`` is ``probs.max(1)`` even for images a
    human moved to another cluster. ``path`` is ``""`` and ``cluster_name`` ``""`` when absent.
    """
    probs = np.asarray(probs)
    n = len(images)
    if probs.ndim != 2 or len(probs) != n:
        raise ValueError(f"probs must be (N, K) with N = {n} images, got shape {probs.shape}")
    if len(state.clusters) != n:
        raise ValueError(f"the curated state covers {len(state.clusters)} images, the image set {n}")
    if not np.isfinite(probs).all():
        raise ValueError("probs contain NaN or infinity")
    outliers = np.zeros(n, dtype=bool)
    outliers[list(state.outliers)] = True
    table = pd.DataFrame({
        "index": np.arange(n),
        "id": [str(i) for i in images.ids],
        "path": ["" if p is None else str(p) for p in images.paths],
        "cluster": np.asarray(state.clusters, dtype=np.int64),
        "cluster_name": [state.names.get(int(c), "") for c in state.clusters],
        "confidence": probs.max(1).astype(np.float64),
        "curated_label": state.labels(),
        "outlier": outliers,
    })
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


def export_label_studio(table: pd.DataFrame, path: Path, image_root_url: str | None = None) -> None:
    """Write Label Studio tasks with the curated label as a prediction (pre-annotation).

    Each task is ``{"data": {"image", "scan_id"}, "predictions": [{"model_version", "score",
    "result": [choices]}]}`` for a labelling config with ``<Image name="image" value="$image"/>``
    and ``<Choices name="choice" toName="image">``. The image is ``image_root_url/<quoted id>``
    when a root URL is given (ids of a folder source are paths relative to the folder), else the
    row's file path; rows without either are refused.
    """
    _check_table(table)
    if image_root_url is None:
        missing = table["id"][table["path"].astype(str) == ""]
        if len(missing):
            raise ValueError(f"{len(missing)} images have no file path (e.g. {missing.iloc[0]!r}); "
                             "give image_root_url to point Label Studio at them")
    tasks = []
    for row in _records(table):
        image = (f"{image_root_url.rstrip('/')}/{quote(str(row['id']))}" if image_root_url is not None
                 else row["path"])
        tasks.append({
            "data": {"image": image, "scan_id": row["id"]},
            "predictions": [{
                "model_version": MODEL_VERSION, "score": row["confidence"],
                "result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                            "value": {"choices": [row["curated_label"]]}}],
            }],
        })
    _save_json(Path(path), tasks)


def export_image_folder(table: pd.DataFrame, images: ImageSet, out_dir: Path, mode: str = "copy",
                        include_outliers: bool = False) -> dict[str, int]:
    """Write ``out_dir/<label folder>/<file>`` for every row (outliers only if ``include_outliers``).

    A row whose ``path`` is an existing file is copied (``mode="copy"``) or symlinked
    (``mode="symlink"``, absolute target) under its own file name; any other row is written as
    ``<safe id>.png`` from ``images.images[index]``. Label folders are :func:`safe_name` of the curated
    label (two labels with the same safe name get distinct folders); clashing file names get
    ``_1``, ``_2``... suffixes. ``out_dir`` must not exist or be empty. Returns images per label.
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
    rows = table if include_outliers else table[~table["outlier"].astype(bool)]
    taken: set[str] = set()  # distinct folders even for labels with one safe name, or differing in case only
    folders = {label: _free_name(safe_name(label), taken) for label in sorted(set(rows["curated_label"].astype(str)))}
    used: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for index, image_id, path, label in zip(rows["index"], rows["id"], rows["path"], rows["curated_label"]):
        folder = out_dir / folders[str(label)]
        source = Path(str(path)) if str(path) else None
        is_file = source is not None and source.is_file()
        name = safe_name(source.name) if is_file else _png_name(str(image_id))
        target = folder / _free_name(name, used.setdefault(folder.name, set()))
        if not is_file:
            save_bytes(target, _png(images.images[int(index)]))
        elif mode == "copy":
            save_bytes(target, source.read_bytes())
        else:
            _atomic_symlink(source.resolve(), target)
        counts[str(label)] = counts.get(str(label), 0) + 1
    return dict(sorted(counts.items()))


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
