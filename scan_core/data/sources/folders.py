"""Folders of image files: every readable image, square-cropped and resized to one working size;
first-level subfolders become class labels when every image lies in one. Unreadable files and
exact duplicates are skipped with the reason (see :mod:`scan_core.data.sources`). Vector clip art
(SVG) is rendered by resvg (the ``resvg-py`` package) with its shorter side at :data:`SVG_SIDE`
pixels, on white like any transparent image.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..images import ImageSet
from .common import Progress, SourceError, check_image_size

VECTOR_EXTENSIONS = frozenset({".svg", ".svgz"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", *VECTOR_EXTENSIONS})
SVG_SIDE = 256  # the shorter side an SVG is rendered at
AUTO_MAX_SIZE = 96          # largest side working_size() picks for grayscale images (what the HOG route needs)
COLOUR_MAX_SIZE = 224       # and for colour ones: the side a pretrained backbone sees (bench/RESULTS.md)
CACHE_BYTES = 2 * 1024 ** 3  # colour images are kept smaller when more would not fit in this
PROGRESS_EVERY = 100
READ_WORKERS = max(1, min(4, os.cpu_count() or 1))
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
                progress: Progress | None = None) -> ImageSet:
    """Every readable image under ``folder`` as ``(N, S, S, C)`` uint8.

    Files are walked recursively in sorted order (hidden files/folders ignored), EXIF-rotated,
    first frame only, centre-cropped to a square and resized to ``S = image_size`` or
    :func:`working_size` of the images. ``C`` is 1 when every image has a grayscale mode, else 3
    (alpha composited on white). Labels are the first-level subfolders when every image lies in
    one. Unreadable files and exact duplicates are skipped and listed in ``skipped`` (see the
    module docstring).
    """
    image_size = check_image_size(image_size)
    root = Path(folder).expanduser()
    if not root.exists():
        raise SourceError(f"folder {root} does not exist")
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder")
    root = root.resolve()
    files, skipped = _scan_folder(root)
    records = _read_images(root, files, image_size, colour_max_size(len(files)), progress)
    loaded: list[tuple] = []
    first_with: dict[str, str] = {}  # digest of the pixels -> id of the first copy
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
    colour = any(pixels.ndim == 3 for _, pixels, _ in loaded)
    size = image_size or working_size([original for _, _, original in loaded], colour)
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


def _read_images(root: Path, files: list[str], image_size: int | None, colour_cap: int,
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
                lambda rel: _read_image(root / rel, image_size, colour_cap), files), start=1):
            results.append(result)
            if progress and (done % PROGRESS_EVERY == 0 or done == total):
                progress(done, total)
    return results


def _read_image(path: Path, image_size: int | None,
                colour_cap: int = COLOUR_MAX_SIZE) -> tuple[np.ndarray, tuple[int, int], bytes] | str:
    """One file as a square ``(s, s)`` L or ``(s, s, 3)`` RGB array, its original ``(h, w)`` and
    a digest of all its decoded pixels (equal digests: exact duplicates).

    ``s`` is ``image_size``, else ``min(h, w)`` capped at :data:`AUTO_MAX_SIZE` for a grayscale
    image, ``colour_cap`` for a colour one (the final size is chosen once all sizes are known).
    Returns the reason as a string if the file is unreadable or has more pixels than
    ``PIL.Image.MAX_IMAGE_PIXELS`` (checked before decoding).
    """
    try:
        with open_image(path) as image:
            width, height = image.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit and width * height > limit:
                return f"image too large: {width}x{height} pixels, more than the limit of {limit}"
            cap = AUTO_MAX_SIZE if image.mode in _GRAY_MODES else colour_cap
            side = image_size or min(width, height, cap)
            image.draft(image.mode, (side, side))  # JPEG: decode at a reduced scale, still >= side
            image.load()
            upright = ImageOps.exif_transpose(image)
            pixels = np.asarray(_square(_canonical(upright), side))
            return pixels, (height, width), _pixel_digest(upright)
    except UnidentifiedImageError:
        return "not a readable image file"
    except Image.DecompressionBombError as error:
        return f"image too large: {error}"
    except Exception as error:
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
