"""Folders of image files: every readable image, square-cropped and resized to one working size;
first-level subfolders become class labels when every image lies in one. Unreadable files and
exact duplicates are skipped with the reason (see :mod:`scan_core.data.sources`). Vector clip art
(SVG) is rendered by resvg (the ``resvg-py`` package) with its shorter side at :data:`SVG_SIDE`
pixels, on white like any transparent image.

Reading is two passes over the files: their headers (size and mode, nothing decoded) give the working
size, then every file is decoded straight to it, in worker processes for a large folder
(:data:`PROCESS_FILES`), threads for a small one. Given a ``cache`` folder, the images go into
memory-mapped shards there as they are decoded (:mod:`scan_core.data.shards`), so that reading a
folder larger than memory holds one shard at a time.
"""
from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..images import ImageSet
from ..shards import ShardedArray, ShardWriter
from .common import Progress, SourceError, check_image_size

VECTOR_EXTENSIONS = frozenset({".svg", ".svgz"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", *VECTOR_EXTENSIONS})
SVG_SIDE = 256  # the shorter side an SVG is rendered at
AUTO_MAX_SIZE = 96          # largest side working_size() picks for grayscale images (what the HOG route needs)
COLOUR_MAX_SIZE = 224       # and for colour ones: the side a pretrained backbone sees (bench/RESULTS.md)
CACHE_BYTES = 2 * 1024 ** 3  # colour images are kept smaller when more would not fit in this
PROGRESS_EVERY = 100
READ_WORKERS = max(1, min(4, os.cpu_count() or 1))  # threads of a small folder
PROCESS_FILES = 2000  # from this many files on, worker processes decode (one per core)
WINDOW = 1024  # files handed to the workers at a time: what is in flight stays bounded
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})


def colour_max_size(count: int) -> int:
    """The largest side kept for ``count`` colour images: :data:`COLOUR_MAX_SIZE`, less when
    ``count`` of them would take more than :data:`CACHE_BYTES`, never less than :data:`AUTO_MAX_SIZE`."""
    fits = int(np.sqrt(CACHE_BYTES / (3 * max(count, 1)))) // 4 * 4
    return max(AUTO_MAX_SIZE, min(COLOUR_MAX_SIZE, fits))


def working_size(heights_widths: Iterable[tuple[int, int]], colour: bool = False) -> int:
    """Square working resolution for images of the given ``(height, width)`` sizes.

    The median ``m`` of ``min(h, w)``, rounded down to a multiple of 4, within ``[16, cap]``, the
    cap being :data:`AUTO_MAX_SIZE` for grayscale images and :func:`colour_max_size` for
    ``colour`` ones: never more than the images' own size (upsampling adds no information and
    costs time: 40 px made 64 px is (64/40)^2 = 2.6x the pixels), except that tiny images are brought up
    to 16 px, the least the small CNN works on (e.g. 28 stays 28, 40 stays 40, 50 -> 48, 300 -> 96,
    or 224 in colour).
    """
    sides = [min(int(h), int(w)) for h, w in heights_widths]
    if not sides:
        raise ValueError("working_size needs at least one (height, width)")
    if min(sides) < 1:
        raise ValueError("image sizes must be positive")
    median = int(np.median(sides))
    cap = colour_max_size(len(sides)) if colour else AUTO_MAX_SIZE
    return max(16, min(cap, median // 4 * 4))


def load_folder(folder: Path, image_size: int | None = None,
                progress: Progress | None = None, cache: Path | None = None) -> ImageSet:
    """Every readable image under ``folder`` as ``(N, S, S, C)`` uint8.

    Files are walked recursively in sorted order (hidden files/folders ignored), EXIF-rotated,
    first frame only, centre-cropped to a square and resized to ``S = image_size`` or
    :func:`working_size` of the images. ``C`` is 1 when every image has a grayscale mode, else 3
    (alpha composited on white). Labels are the first-level subfolders when every image lies in
    one. Unreadable files and exact duplicates are skipped and listed in ``skipped`` (see the
    module docstring). With ``cache``, the images are written there in shards as they are decoded
    and returned memory-mapped (a :class:`~scan_core.data.shards.ShardedArray`).
    """
    image_size = check_image_size(image_size)
    root = Path(folder).expanduser()
    if not root.exists():
        raise SourceError(f"folder {root} does not exist")
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder")
    root = root.resolve()
    files, skipped = _scan_folder(root)
    # a file over MAX_IMAGE_PIXELS is skipped with a reason by _read_header: no warning too
    with warnings.catch_warnings(), _executor(len(files)) as pool:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        headers = dict(zip(files, _in_order(pool, partial(_read_header, root), files)))
        readable = [rel for rel in files if not isinstance(headers[rel], str)]
        skipped += [_skip(rel, headers[rel]) for rel in files if isinstance(headers[rel], str)]
        if readable:
            colour = any(headers[rel][1] for rel in readable)
            size = image_size or working_size([headers[rel][0] for rel in readable], colour)
            shape = (size, size, 3 if colour else 1)
            decoded = _in_order(pool, partial(_read_image, root, size=size, channels=shape[2]), readable, progress)
            kept, sink = _kept(readable, decoded, skipped, shape, cache)
    if not readable or not kept:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        detail = f" ({len(skipped)} files skipped: {reasons})" if skipped else ""
        raise SourceError(f"no readable images in {_display(str(root))}{detail}", f"no readable images{detail}")
    ids = [_display(rel) for rel in kept]
    labels, class_names = _folder_labels(ids)
    return ImageSet(name=_display(root.name), images=sink, ids=np.asarray(ids),
                    paths=np.asarray([_display(str(root / rel)) for rel in kept]),
                    labels=labels, class_names=class_names, skipped=skipped)


def _kept(files: list[str], decoded: Iterator, skipped: list[dict], shape: tuple[int, int, int],
          cache: Path | None) -> tuple[list[str], np.ndarray | ShardedArray]:
    """The files kept (each decoded one but the unreadable ones and the copies of an earlier one,
    which go to ``skipped``) and their pixels ``(N, *shape)``: an array, or shards
    written into ``cache``."""
    writer = ShardWriter(cache, "images", shape, np.uint8) if cache is not None else None
    pixels: list[np.ndarray] = []
    kept: list[str] = []
    first_with: dict[bytes, str] = {}  # digest of the pixels -> id of the first copy
    for rel, record in zip(files, decoded):
        if isinstance(record, str):
            skipped.append(_skip(rel, record))
            continue
        image, digest = record
        if digest in first_with:
            skipped.append(_skip(rel, f"duplicate of {first_with[digest]}"))
            continue
        first_with[digest] = _display(rel)
        kept.append(rel)
        if writer is not None:
            writer.append(image[None])
        else:
            pixels.append(image)
    if writer is not None:
        names = writer.close()
        return kept, ShardedArray.load(cache, names) if names else np.zeros((0, *shape), np.uint8)
    return kept, np.stack(pixels) if pixels else np.zeros((0, *shape), np.uint8)


def _executor(files: int) -> Executor:
    """Worker processes for a large folder (a fresh interpreter each: the caller may hold threads),
    threads for a small one."""
    if files >= PROCESS_FILES and (os.cpu_count() or 1) > 1:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        return ProcessPoolExecutor(os.cpu_count(), mp_context=multiprocessing.get_context(method),
                                   initializer=warnings.simplefilter, initargs=("ignore", Image.DecompressionBombWarning))
    return ThreadPoolExecutor(READ_WORKERS)


def _in_order(pool: Executor, read: Callable, files: list[str], progress: Progress | None = None) -> Iterator:
    """``read(rel)`` of every file, in order, :data:`WINDOW` files at a time; ``progress(done, total)``."""
    total = len(files)
    if progress:
        progress(0, total)
    chunk = max(1, min(64, WINDOW // (4 * (os.cpu_count() or 1))))
    for start in range(0, total, WINDOW):
        window = files[start:start + WINDOW]
        for done, result in enumerate(pool.map(read, window, chunksize=chunk), start=start + 1):
            if progress and (done % PROGRESS_EVERY == 0 or done == total):
                progress(done, total)
            yield result


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


def _read_header(root: Path, rel: str) -> tuple[tuple[int, int], bool] | str:
    """``((height, width), colour)`` of a file from its header, nothing decoded (an SVG: the size it
    is rendered at, :data:`SVG_SIDE` a side, in colour), or why it cannot be read."""
    path = root / rel
    if path.suffix.lower() in VECTOR_EXTENSIONS:
        return (SVG_SIDE, SVG_SIDE), True
    try:
        with Image.open(path) as image:
            width, height = image.size
            gray = image.mode in _GRAY_MODES or image.mode.startswith("I;16")
    except Exception as error:
        return _why_unreadable(error)
    return _too_large(width, height) or ((height, width), not gray)


def _read_image(root: Path, rel: str, size: int, channels: int) -> tuple[np.ndarray, bytes] | str:
    """One file as a square ``(size, size, channels)`` uint8 array and a digest of all its decoded
    pixels (equal digests: exact duplicates); a grayscale image among colour ones is repeated over
    the three channels. Returns the reason as a string if the file is unreadable or has more
    pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (checked before decoding)."""
    try:
        with open_image(root / rel) as image:
            too_large = _too_large(*image.size)
            if too_large:
                return too_large
            image.draft(image.mode, (size, size))  # JPEG: decode at a reduced scale, still >= size
            image.load()
            upright = ImageOps.exif_transpose(image)
            pixels = np.asarray(_square(_canonical(upright), size))
            pixels = pixels[..., None] if pixels.ndim == 2 else pixels
            if pixels.shape[2] != channels:
                pixels = np.repeat(pixels, channels, axis=2)
            return pixels, _pixel_digest(upright)
    except Exception as error:
        return _why_unreadable(error)


def _too_large(width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` is skipped undecoded: more pixels than Pillow's limit."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        return f"image too large: {width}x{height} pixels, more than the limit of {limit}"
    return None


def _why_unreadable(error: Exception) -> str:
    """The reason a file is skipped when opening or decoding it raised ``error``."""
    if isinstance(error, UnidentifiedImageError):
        return "not a readable image file"
    if isinstance(error, Image.DecompressionBombError):
        return f"image too large: {error}"
    return f"unreadable image: {error or type(error).__name__}"


def open_image(path: Path) -> Image.Image:
    """``path`` opened by Pillow; an SVG rendered first (:func:`render_svg`)."""
    if path.suffix.lower() in VECTOR_EXTENSIONS:
        return Image.open(io.BytesIO(render_svg(path)))
    return Image.open(path)


def render_svg(path: Path, side: int = SVG_SIDE) -> bytes:
    """The SVG at ``path`` as PNG bytes (RGBA), its shorter side ``side`` pixels; ValueError naming
    the package when resvg-py is not installed, resvg's own error for a file it cannot read."""
    try:
        import resvg_py
    except ImportError as error:
        raise ValueError("SVG files need the package resvg-py (pip install -r requirements.txt)") from error
    with Image.open(io.BytesIO(bytes(resvg_py.svg_to_bytes(svg_path=str(path))))) as natural:
        width, height = natural.size
    scale = side / max(1, min(width, height))
    return bytes(resvg_py.svg_to_bytes(svg_path=str(path), width=max(1, round(width * scale)),
                                       height=max(1, round(height * scale))))


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
    if "transparency" in image.info and mode in ("L", "P", "RGB") or mode in ("La", "RGBa", "PA"):
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


def _folder_labels(ids: list[str]) -> tuple[np.ndarray | None, list[str]]:
    """Labels from first-level subfolders when every image lies in one, else ``(None, [])``."""
    parts = [PurePosixPath(rel).parts for rel in ids]
    if any(len(p) < 2 for p in parts):
        return None, []
    class_names = sorted({p[0] for p in parts})
    index = {name: i for i, name in enumerate(class_names)}
    return np.asarray([index[p[0]] for p in parts], dtype=np.int64), class_names
