"""Turn a dataset spec into one :class:`~scan_core.images.ImageSet`.

A spec is a built-in dataset name with an optional split (``digits``, ``fashion-mnist``,
``fashion-mnist:train``, ``cifar10:test``, ``stl10:unlabeled`` ...), a path to a folder of images,
or a path to a ``.zip`` of such a folder. Built-in names win over same-named relative folders
(write ``./digits`` for the folder). Every source returns uint8 images of shape ``(N, H, W, C)``
with ``C`` 1 (grayscale) or 3 (RGB):

* ``digits``: scikit-learn's bundled 1797 8x8 digits, upsampled to 16x16, C=1.
* ``fashion-mnist``: 70 000 28x28 images, C=1, read from the Debian package
  ``dataset-fashion-mnist`` or ``data_dir`` (IDX files), else downloaded with torchvision.
* ``cifar10`` (32x32) and ``stl10`` (96x96), C=3: torchvision downloads into ``data_dir``.
* folder / zip: every readable image file, square-cropped and resized to one working size;
  first-level subfolders become class labels when every image lies in one.

Without a split the built-ins give train + test concatenated, train first. Unreadable image files
in a folder (corrupt, truncated, over Pillow's decompression-bomb limit) and exact duplicates are
skipped and listed in ``ImageSet.skipped`` with the reason; every other failure raises
:class:`SourceError` with a message that names the file or dataset and the problem.

Duplicates (the same pixels after decoding) are kept once, the first in sorted order: a copy is
its own nearest neighbour at distance zero, so it takes a slot of every neighbour list it is in
and hands SCAN a pair that agrees trivially, pulling copies (and what surrounds them) together
whatever they show. File names that are not valid UTF-8 are loaded; their ids, paths and skip
entries show the undecodable bytes as ``\\xNN`` escapes so that they stay JSON-safe (such a
``paths`` entry names the file readably but cannot be opened as it is).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .images import ImageSet

BUILTIN = ("digits", "fashion-mnist", "cifar10", "stl10")
SPLITS = {
    "digits": (),
    "fashion-mnist": ("train", "test"),
    "cifar10": ("train", "test"),
    "stl10": ("train", "test", "unlabeled"),
}
DATA_DIR_ENV = "SCAN_EXPLORER_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/scan_explorer/datasets")

#: Folders searched (in order) for the Fashion-MNIST IDX files before ``data_dir``.
FASHION_DIRS: list[Path] = [Path("/usr/share/datasets/fashion-mnist")]
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_MAGIC = {3: 2051, 1: 2049}            # ndim -> magic of an unsigned-byte IDX file
_TORCHVISION = {  # dataset -> (title, torchvision.datasets class, constructor kwargs of a split)
    "cifar10": ("CIFAR-10", "CIFAR10", lambda split: {"train": split == "train"}),
    "stl10": ("STL-10", "STL10", lambda split: {"split": split}),
}
_ID_WIDTH = {"digits": 4, "fashion-mnist": 5, "cifar10": 5, "stl10": 5}  # id digits (largest split)

DIGITS_SIZE = 16
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
IMAGE_SIZE_RANGE = (4, 1024)
AUTO_MAX_SIZE = 96                          # largest size working_size() picks
PROGRESS_EVERY = 100
READ_WORKERS = max(1, min(4, os.cpu_count() or 1))

ZIP_MAX_FILES = 200_000
ZIP_MAX_TOTAL_BYTES = 4 * 2**30
_ZIP_META = ".scan_zip.json"                # written last into a finished extraction
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})

Progress = Callable[[int, int], None]


class SourceError(ValueError):
    """A data source cannot be loaded; the message names the file or dataset and the problem."""


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def default_data_dir() -> Path:
    """Download / cache folder: ``$SCAN_EXPLORER_DATA`` or ``~/.cache/scan_explorer/datasets``."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def load_source(spec: str, data_dir: Path | None = None, image_size: int | None = None,
                progress: Progress | None = None) -> ImageSet:
    """Load the images a ``spec`` names (built-in[:split], folder or .zip) as one ImageSet.

    ``image_size`` forces square ``image_size`` x ``image_size`` images (default: the source's
    native size, or :func:`working_size` for folders); ``progress(done, total)`` is called while
    reading folders. Raises :class:`SourceError` when the source cannot be loaded.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"spec must be a non-empty string, got {spec!r}")
    image_size = _check_image_size(image_size)
    if progress is not None and not callable(progress):
        raise ValueError("progress must be callable(done, total) or None")
    data_dir = _data_dir(data_dir)
    spec = spec.strip()
    name, _, split = spec.partition(":")
    dataset = name.lower()
    if dataset in BUILTIN:
        split = _check_split(dataset, split.lower() or None)
        if dataset == "digits":
            return load_digits(image_size)
        if dataset == "fashion-mnist":
            return load_fashion_mnist(split, data_dir, image_size)
        if dataset == "cifar10":
            return load_cifar10(split, data_dir, image_size)
        return load_stl10(split, data_dir, image_size)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_folder(path, image_size, progress)
    if path.is_file() and path.suffix.lower() == ".zip":
        return load_zip(path, data_dir, image_size, progress)
    if path.exists():
        raise SourceError(f"{path} is neither a folder nor a .zip file")
    raise SourceError(f"{spec!r} is not a built-in dataset ({', '.join(BUILTIN)}) "
                      "nor an existing folder or .zip file")


def working_size(heights_widths: Iterable[tuple[int, int]]) -> int:
    """Square working resolution for images of the given ``(height, width)`` sizes.

    With ``m`` the median of ``min(h, w)``: ``m <= 32`` keeps roughly the native size
    (``max(16, m rounded to a multiple of 4)``, e.g. 28 stays 28), ``m <= 64`` gives 64,
    anything larger 96.
    """
    sides = [min(int(h), int(w)) for h, w in heights_widths]
    if not sides:
        raise ValueError("working_size needs at least one (height, width)")
    if min(sides) < 1:
        raise ValueError("image sizes must be positive")
    median = float(np.median(sides))
    if median <= 32:
        return max(16, int(median / 4 + 0.5) * 4)
    return 64 if median <= 64 else AUTO_MAX_SIZE


# --------------------------------------------------------------------------------------------
# Built-in datasets
# --------------------------------------------------------------------------------------------

def load_digits(image_size: int | None = None) -> ImageSet:
    """scikit-learn's 1797 handwritten digits: ``(1797, S, S, 1)``, S = 16 unless ``image_size``."""
    from sklearn.datasets import load_digits as sklearn_digits

    image_size = _check_image_size(image_size)
    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    images = _resize_batch(images, image_size or DIGITS_SIZE)
    labels = bunch.target.astype(np.int64)
    return _builtin_set("digits", None, [(None, images, labels)], [str(d) for d in range(10)])


def load_fashion_mnist(split: str | None = None, data_dir: Path | None = None,
                       image_size: int | None = None) -> ImageSet:
    """Fashion-MNIST ``(N, 28, 28, 1)``: train (60 000), test (10 000) or both (``split=None``).

    Looks for the gzip'd (or plain) IDX files in :data:`FASHION_DIRS`, ``data_dir/fashion-mnist``
    and torchvision's ``data_dir/FashionMNIST/raw``; downloads with torchvision if none is found.
    """
    split = _check_split("fashion-mnist", split)
    image_size = _check_image_size(image_size)
    data_dir = _data_dir(data_dir)
    splits = [split] if split else ["train", "test"]
    folder = _find_fashion_dir(splits, data_dir)
    if folder is None:
        _download_fashion(data_dir)
        folder = _find_fashion_dir(splits, data_dir)
        if folder is None:
            raise SourceError(f"Fashion-MNIST: download into {data_dir} finished but the IDX "
                              "files are missing")
    parts = []
    for name in splits:
        image_file, label_file = (_idx_path(folder, stem) for stem in _FASHION_FILES[name])
        images, labels = _read_idx(image_file, 3), _read_idx(label_file, 1)
        if len(images) != len(labels):
            raise SourceError(f"{label_file}: {len(labels)} labels for {len(images)} images "
                              f"in {image_file}")
        if labels.size and labels.max() >= len(FASHION_CLASSES):
            raise SourceError(f"{label_file}: label {labels.max()} is not a Fashion-MNIST class")
        parts.append((name, _resize_batch(images[..., None], image_size), labels.astype(np.int64)))
    return _builtin_set("fashion-mnist", split, parts, list(FASHION_CLASSES))


def load_cifar10(split: str | None = None, data_dir: Path | None = None,
                 image_size: int | None = None) -> ImageSet:
    """CIFAR-10 ``(N, 32, 32, 3)``: train (50 000), test (10 000) or both (downloaded)."""
    return _load_torchvision("cifar10", split, data_dir, image_size)


def load_stl10(split: str | None = None, data_dir: Path | None = None,
               image_size: int | None = None) -> ImageSet:
    """STL-10 ``(N, 96, 96, 3)``: train (5 000), test (8 000), both, or the unlabelled 100 000.

    Downloads the 2.6 GB archive into ``data_dir`` on first use. ``unlabeled`` has no labels.
    """
    return _load_torchvision("stl10", split, data_dir, image_size)


def _load_torchvision(dataset: str, split: str | None, data_dir: Path | None,
                      image_size: int | None) -> ImageSet:
    """A torchvision dataset (see :data:`_TORCHVISION`) as uint8 NHWC, splits concatenated."""
    split = _check_split(dataset, split)
    image_size = _check_image_size(image_size)
    title, class_name, split_kwargs = _TORCHVISION[dataset]
    parts, classes = [], []
    for name in [split] if split else ["train", "test"]:
        data = _torchvision_dataset(title, class_name, data_dir, **split_kwargs(name))
        images = np.asarray(data.data, dtype=np.uint8)
        if images.shape[1] == 3:                      # STL-10 stores (N, 3, H, W)
            images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        labels = np.asarray(data.targets if hasattr(data, "targets") else data.labels, np.int64)
        parts.append((name, _resize_batch(images, image_size),
                      None if (labels < 0).any() else labels))   # STL-10 unlabeled: all -1
        classes = list(data.classes)
    return _builtin_set(dataset, split, parts, classes)


def _check_split(dataset: str, split: str | None) -> str | None:
    if split and split not in SPLITS[dataset]:
        valid = ", ".join(SPLITS[dataset]) or "none"
        raise SourceError(f"{dataset} has no split {split!r} (splits: {valid})")
    return split or None


def _builtin_set(dataset: str, split: str | None, parts: list, class_names: list[str]) -> ImageSet:
    """Join ``[(split_name, images, labels), ...]`` into one set, ids ``dataset/split/00000``."""
    ids = []
    for name, images, _ in parts:
        prefix = f"{dataset}/{name}/" if name else f"{dataset}/"
        width = _ID_WIDTH[dataset]
        ids.extend(f"{prefix}{i:0{width}d}" for i in range(len(images)))
    labelled = all(labels is not None for _, _, labels in parts)
    return ImageSet(
        name=f"{dataset}:{split}" if split else dataset,
        images=np.concatenate([images for _, images, _ in parts]),
        ids=np.asarray(ids), paths=np.full(len(ids), "", dtype="<U1"),
        labels=np.concatenate([labels for _, _, labels in parts]) if labelled else None,
        class_names=list(class_names) if labelled else [])


def _resize_batch(images: np.ndarray, size: int | None, chunk: int = 4096) -> np.ndarray:
    """Resize square uint8 ``(N, S, S, C)`` to ``(N, size, size, C)`` (bilinear, antialiased)."""
    if size is None or images.shape[1:3] == (size, size):
        return images
    import torch
    import torch.nn.functional as F

    out = np.empty((len(images), size, size, images.shape[3]), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        batch = torch.from_numpy(np.array(images[start:start + chunk]))  # writable copy
        batch = batch.permute(0, 3, 1, 2).float()
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        batch = batch.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        out[start:start + chunk] = batch.numpy()
    return out


def _find_fashion_dir(splits: list[str], data_dir: Path) -> Path | None:
    """First search folder that holds all IDX files the splits need (``.gz`` or plain)."""
    candidates = [*map(Path, FASHION_DIRS), data_dir / "fashion-mnist",
                  data_dir / "FashionMNIST" / "raw"]
    stems = [stem for name in splits for stem in _FASHION_FILES[name]]
    for folder in candidates:
        if all(_idx_path(folder, stem).is_file() for stem in stems):
            return folder
    return None


def _idx_path(folder: Path, stem: str) -> Path:
    gz = folder / f"{stem}.gz"
    return gz if gz.is_file() else folder / stem


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file (maybe gzip'd): ``(N, 28, 28)`` images or ``(N,)`` labels."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise SourceError(f"{path}: cannot read ({error}); the file is corrupt or truncated") \
            from error
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SourceError(f"{path}: truncated IDX file ({len(data)} bytes, header needs {header})")
    magic = int.from_bytes(data[:4], "big")
    if magic != _IDX_MAGIC[ndim]:
        raise SourceError(f"{path}: not an IDX file with {ndim} dimension(s) "
                          f"(magic {magic}, expected {_IDX_MAGIC[ndim]})")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise SourceError(f"{path}: IDX header promises {shape} = {expected} bytes but the file "
                          f"holds {len(data) - header}; it is truncated or corrupt")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _download_fashion(data_dir: Path) -> None:
    try:
        from torchvision import datasets

        datasets.FashionMNIST(root=str(data_dir), train=True, download=True)
    except Exception as error:  # noqa: BLE001 - any download failure gets the same advice
        dirs = ", ".join(str(d) for d in FASHION_DIRS)
        raise SourceError(
            f"Fashion-MNIST not found (looked in {dirs} and {data_dir}) and could not download "
            f"it into {data_dir}: {error}. Install it with `sudo apt-get install "
            f"dataset-fashion-mnist`, or connect to the internet so it downloads into "
            f"{data_dir}.") from error


def _torchvision_dataset(title: str, class_name: str, data_dir: Path | None, **kwargs):
    """Instantiate ``torchvision.datasets.<class_name>(root=data_dir, download=True, **kwargs)``."""
    data_dir = _data_dir(data_dir)
    try:
        from torchvision import datasets

        data_dir.mkdir(parents=True, exist_ok=True)
        return getattr(datasets, class_name)(root=str(data_dir), download=True, **kwargs)
    except Exception as error:  # noqa: BLE001 - network, archive and integrity errors alike
        raise SourceError(f"could not download {title} into {data_dir}: {error}; connect to the "
                          "internet or place the files there") from error


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------

def load_folder(folder: Path, image_size: int | None = None,
                progress: Progress | None = None) -> ImageSet:
    """Every readable image under ``folder`` as ``(N, S, S, C)`` uint8.

    Files are walked recursively in sorted order (hidden files/folders ignored), EXIF-rotated,
    first frame only, centre-cropped to a square and resized to ``S = image_size`` or
    :func:`working_size` of the images. ``C`` is 1 when every image has a grayscale mode, else 3
    (alpha composited on white). Labels are the first-level subfolders when every image lies in
    one. Unreadable files and exact duplicates are skipped and listed in ``skipped`` (see the
    module docstring).
    """
    image_size = _check_image_size(image_size)
    root = Path(folder).expanduser()
    if not root.exists():
        raise SourceError(f"folder {root} does not exist")
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder")
    root = root.resolve()
    files, skipped = _scan_folder(root)
    records = _read_images(root, files, image_size, progress)
    loaded, first_with = [], {}                   # digest of the pixels -> id of the first copy
    for rel, record in zip(files, records):
        if isinstance(record, str):
            skipped.append(_skip(rel, record))
            continue
        pixels, original, digest = record
        if digest in first_with:
            skipped.append(_skip(rel, f"duplicate of {first_with[digest]}"))
        else:
            first_with[digest] = _display(rel)
            loaded.append((rel, pixels, original))
    if not loaded:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        detail = f" ({len(skipped)} files skipped: {reasons})" if skipped else ""
        raise SourceError(f"no readable images in {_display(str(root))}{detail}")
    size = image_size or working_size([original for _, _, original in loaded])
    images = _stack_images([pixels for _, pixels, _ in loaded], size)
    ids = [_display(rel) for rel, _, _ in loaded]
    labels, class_names = _folder_labels(ids)
    return ImageSet(name=_display(root.name), images=images, ids=np.asarray(ids),
                    paths=np.asarray([_display(str(root / rel)) for rel, _, _ in loaded]),
                    labels=labels, class_names=class_names, skipped=skipped)


def _scan_folder(root: Path) -> tuple[list[str], list[dict]]:
    """Sorted relative POSIX paths of candidate image files, plus skipped entries with reasons."""
    files, skipped = [], []

    def unlisted(error: OSError) -> None:
        skipped.append(_skip(_relative(root, Path(error.filename or root)),
                             f"cannot list folder: {error.strerror or error}"))

    for current, dirs, names in os.walk(root, onerror=unlisted):
        here = Path(current)
        kept = []
        for name in dirs:
            if name.startswith("."):
                continue
            if (here / name).is_symlink():         # os.walk does not follow it; note escapes
                if not _inside(root, here / name):
                    skipped.append(_skip(_relative(root, here / name), "symlink points outside the folder"))
                continue
            kept.append(name)
        dirs[:] = sorted(kept)
        for name in names:
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if path.is_symlink() and not _inside(root, path):
                skipped.append(_skip(_relative(root, path), "symlink points outside the folder"))
                continue
            files.append(_relative(root, path))
    files.sort(key=lambda rel: PurePosixPath(rel).parts)
    return files, skipped


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _display(name: str) -> str:
    """``name`` as valid UTF-8 text: bytes that are not UTF-8 (surrogate escapes of a file name
    read from disk) become ``\\xNN``, e.g. ``caf\\xe9.png``; other names are unchanged."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _skip(rel: str, reason: str) -> dict:
    """A ``skipped`` entry: the file's JSON-safe relative path and why it was left out."""
    return {"path": _display(rel), "reason": reason}


def _inside(root: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(root)


def _read_images(root: Path, files: list[str], image_size: int | None,
                 progress: Progress | None) -> list:
    """Decode ``files`` in parallel, in order; each result is :func:`_read_image`'s."""
    total = len(files)
    if progress:
        progress(0, total)
    results = []
    with ThreadPoolExecutor(READ_WORKERS) as pool, warnings.catch_warnings():
        # a file over MAX_IMAGE_PIXELS is skipped with a reason by _read_image: no warning too
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for done, result in enumerate(pool.map(
                lambda rel: _read_image(root / rel, image_size), files), start=1):
            results.append(result)
            if progress and (done % PROGRESS_EVERY == 0 or done == total):
                progress(done, total)
    return results


def _read_image(path: Path, image_size: int | None) -> tuple[np.ndarray, tuple[int, int], bytes] | str:
    """One file as a square ``(s, s)`` L or ``(s, s, 3)`` RGB array, its original ``(h, w)`` and
    a digest of all its decoded pixels (equal digests: exact duplicates).

    ``s`` is ``image_size``, else ``min(h, w)`` capped at :data:`AUTO_MAX_SIZE` (the final size
    is chosen once all sizes are known). Returns the reason as a string if the file is unreadable
    or has more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (checked before decoding).
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit and width * height > limit:
                return f"image too large: {width}x{height} pixels, more than the limit of {limit}"
            side = image_size or min(width, height, AUTO_MAX_SIZE)
            image.draft(image.mode, (side, side))  # JPEG: decode at a reduced scale, still >= side
            image.load()
            image = ImageOps.exif_transpose(image)
            pixels = np.asarray(_square(_canonical(image), side))
            return pixels, (height, width), _pixel_digest(image)
    except UnidentifiedImageError:
        return "not a readable image file"
    except Image.DecompressionBombError as error:
        return f"image too large: {error}"
    except Exception as error:  # noqa: BLE001 - Pillow decoders raise many types: skip the file
        return f"unreadable image: {error or type(error).__name__}"


def _pixel_digest(image: Image.Image) -> bytes:
    """Digest of the decoded pixels (mode, size, values, palette): equal for exact copies only."""
    header = f"{image.mode} {image.size} ".encode() + bytes(image.getpalette() or [])
    return hashlib.sha1(header + image.tobytes()).digest()


def _canonical(image: Image.Image) -> Image.Image:
    """Convert any mode to ``L`` (grayscale modes) or ``RGB``; alpha is composited on white."""
    mode = image.mode
    if mode.startswith("I;16"):
        return _scaled_to_l(np.asarray(image, dtype=np.float64), 0.0, 65535.0)
    if mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        return _scaled_to_l(values, float(values.min()), float(values.max()))
    gray = mode in _GRAY_MODES
    target = "L" if gray else "RGB"
    if "transparency" in image.info and mode in ("L", "P", "RGB"):
        image = image.convert("LA" if gray else "RGBA")
    elif mode in ("La", "RGBa", "PA"):
        image = image.convert("LA" if gray else "RGBA")
    if image.mode in ("LA", "RGBA"):
        background = Image.new(target, image.size, 255 if gray else (255, 255, 255))
        background.paste(image.convert(target), mask=image.getchannel("A"))
        return background
    return image if image.mode == target else image.convert(target)


def _scaled_to_l(values: np.ndarray, low: float, high: float) -> Image.Image:
    """Map ``low..high`` linearly to 0..255 (a constant image keeps its clipped value)."""
    if high > low:
        values = (values - low) * (255.0 / (high - low))
    return Image.fromarray(np.rint(values.clip(0, 255)).astype(np.uint8))


def _square(image: Image.Image, side: int) -> Image.Image:
    """Centre-crop to a square and resize to ``side`` (Lanczos down, bicubic up)."""
    width, height = image.size
    short = min(width, height)
    left, top = (width - short) / 2, (height - short) / 2
    if short == side and width == height:
        return image
    resample = Image.Resampling.LANCZOS if side < short else Image.Resampling.BICUBIC
    return image.resize((side, side), resample, box=(left, top, left + short, top + short),
                        reducing_gap=3.0 if side < short else None)


def _stack_images(pixels: list[np.ndarray], size: int) -> np.ndarray:
    """Stack square L / RGB arrays into ``(N, size, size, C)``, C=3 if any image is RGB."""
    channels = 3 if any(p.ndim == 3 for p in pixels) else 1
    out = np.empty((len(pixels), size, size, channels), dtype=np.uint8)
    for i, array in enumerate(pixels):
        if array.shape[0] != size:
            array = np.asarray(_square(Image.fromarray(array), size))
        out[i] = array[..., None] if array.ndim == 2 else array
    return out


def _folder_labels(ids: list[str]) -> tuple[np.ndarray | None, list[str]]:
    """Labels from first-level subfolders when every image lies in one, else ``(None, [])``."""
    parts = [PurePosixPath(rel).parts for rel in ids]
    if any(len(p) < 2 for p in parts):
        return None, []
    class_names = sorted({p[0] for p in parts})
    index = {name: i for i, name in enumerate(class_names)}
    return np.asarray([index[p[0]] for p in parts], dtype=np.int64), class_names


# --------------------------------------------------------------------------------------------
# Zip archives
# --------------------------------------------------------------------------------------------

def load_zip(path: Path, data_dir: Path | None = None, image_size: int | None = None,
             progress: Progress | None = None) -> ImageSet:
    """The images of a ``.zip`` archive, loaded like :func:`load_folder`.

    The image entries are extracted once into ``data_dir/zips/<key>/`` (key: hash of the zip's
    path, size and mtime) and reused afterwards. Entries with absolute paths, ``..``
    components, links or encryption are skipped with a reason. A single top-level folder is
    treated as the root. Raises :class:`SourceError` for a corrupt zip or one over
    :data:`ZIP_MAX_FILES` / :data:`ZIP_MAX_TOTAL_BYTES`.
    """
    image_size = _check_image_size(image_size)
    path = Path(path).expanduser()
    if not path.is_file():
        raise SourceError(f"zip file {path} does not exist")
    path = path.resolve()
    data_dir = _data_dir(data_dir)
    try:
        with zipfile.ZipFile(path) as archive:
            _check_zip_limits(path, archive.infolist())
            target = _extract_zip(path, archive, data_dir / "zips")
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError) as error:
        raise SourceError(f"{path} is not a valid zip file: {error}") from error
    except OSError as error:
        raise SourceError(f"cannot read or extract {path}: {error}") from error
    zip_skipped = json.loads((target / _ZIP_META).read_text())["skipped"]
    try:
        images = load_folder(_zip_root(target), image_size, progress)
    except SourceError as error:                  # e.g. no readable image: name the zip
        raise SourceError(f"{path}: {error}") from error
    images.name = path.stem
    images.skipped = zip_skipped + images.skipped
    return images


def _check_zip_limits(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) > ZIP_MAX_FILES:
        raise SourceError(f"{path} holds {len(infos)} entries, more than the limit of "
                          f"{ZIP_MAX_FILES}")
    total = sum(info.file_size for info in infos)
    if total > ZIP_MAX_TOTAL_BYTES:
        raise SourceError(f"{path} unpacks to {total} bytes, more than the limit of "
                          f"{ZIP_MAX_TOTAL_BYTES} bytes")


def _extract_zip(path: Path, archive: zipfile.ZipFile, cache: Path) -> Path:
    """Extract the image entries once into ``cache/<key>``; return that folder."""
    info = path.stat()
    key = hashlib.sha1(f"{path}\0{info.st_size}\0{info.st_mtime_ns}".encode()).hexdigest()
    target = cache / key
    if (target / _ZIP_META).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{key}."))
    try:
        skipped = [item for entry in archive.infolist()
                   if (item := _extract_entry(archive, entry, staging)) is not None]
        (staging / _ZIP_META).write_text(json.dumps({"zip": str(path), "skipped": skipped}))
        if target.exists() and not (target / _ZIP_META).is_file():  # a half-finished attempt
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / _ZIP_META).is_file():  # else another process finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # nothing left after a successful replace
    return target


def _extract_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, staging: Path) -> dict | None:
    """Extract one image entry under ``staging``; a dict ``{path, reason}`` if it was refused."""
    name = entry.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if entry.is_dir() or not parts or PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    if name.startswith("/") or ".." in parts or ":" in parts[0]:
        return {"path": entry.filename, "reason": "unsafe path in zip (absolute or '..')"}
    if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
        return None
    if stat.S_ISLNK(entry.external_attr >> 16):
        return {"path": entry.filename, "reason": "symlink entry in zip"}
    if entry.flag_bits & 0x1:
        return {"path": entry.filename, "reason": "encrypted zip entry"}
    destination = staging.joinpath(*parts)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with archive.open(entry) as source, open(destination, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as error:
        destination.unlink(missing_ok=True)
        return {"path": entry.filename, "reason": f"cannot extract: {error}"}
    return None


def _zip_root(extracted: Path) -> Path:
    """The single top-level folder of an extraction, else the extraction itself."""
    top = [p for p in extracted.iterdir() if not p.name.startswith(".")]
    if len(top) == 1 and top[0].is_dir():
        return top[0]
    return extracted


# --------------------------------------------------------------------------------------------

def _check_image_size(image_size: int | None) -> int | None:
    """``image_size`` as an int (or None); ValueError outside :data:`IMAGE_SIZE_RANGE`."""
    if image_size is None:
        return None
    low, high = IMAGE_SIZE_RANGE
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or not low <= image_size <= high:
        raise ValueError(f"image_size must be an integer in [{low}, {high}] or None, "
                         f"got {image_size!r}")
    return int(image_size)


def _data_dir(data_dir: Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
