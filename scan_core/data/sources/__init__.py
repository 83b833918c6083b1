"""Turn a dataset spec into one :class:`~scan_core.data.images.ImageSet`.

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

from pathlib import Path

from ..images import ImageSet
from .builtin import (
    BUILTIN,
    FASHION_CLASSES,
    SPLITS,
    check_split,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_stl10,
)
from .common import Progress, SourceError, check_image_size, data_dir_or_default, default_data_dir
from .folders import IMAGE_EXTENSIONS, load_folder, working_size
from .zips import ZIP_MAX_FILES, ZIP_MAX_TOTAL_BYTES, load_zip

__all__ = ["BUILTIN", "FASHION_CLASSES", "IMAGE_EXTENSIONS", "SPLITS", "ZIP_MAX_FILES", "ZIP_MAX_TOTAL_BYTES",
           "SourceError", "default_data_dir", "load_cifar10", "load_digits", "load_fashion_mnist", "load_folder",
           "load_source", "load_stl10", "load_zip", "working_size"]


def load_source(spec: str, data_dir: Path | None = None, image_size: int | None = None,
                progress: Progress | None = None, cache: Path | None = None) -> ImageSet:
    """Load the images a ``spec`` names (built-in[:split], folder or .zip) as one ImageSet.

    ``image_size`` forces square ``image_size`` x ``image_size`` images (default: the source's
    native size, or :func:`working_size` for folders); ``progress(done, total)`` is called while
    reading folders; with ``cache``, a folder's or zip's images are written there in shards as they
    are decoded (:func:`load_folder`). Raises :class:`SourceError` when the source cannot be loaded.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"spec must be a non-empty string, got {spec!r}")
    image_size = check_image_size(image_size)
    if progress is not None and not callable(progress):
        raise ValueError("progress must be callable(done, total) or None")
    data_dir = data_dir_or_default(data_dir)
    spec = spec.strip()
    name, _, split = spec.partition(":")
    dataset = name.lower()
    if dataset in BUILTIN:
        split = check_split(dataset, split.lower() or None)
        if dataset == "digits":
            return load_digits(image_size)
        if dataset == "fashion-mnist":
            return load_fashion_mnist(split, data_dir, image_size)
        if dataset == "cifar10":
            return load_cifar10(split, data_dir, image_size)
        return load_stl10(split, data_dir, image_size)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_folder(path, image_size, progress, cache)
    if path.is_file() and path.suffix.lower() == ".zip":
        return load_zip(path, data_dir, image_size, progress, cache)
    if path.exists():
        raise SourceError(f"{path} is neither a folder nor a .zip file")
    raise SourceError(f"{spec!r} is not a built-in dataset ({', '.join(BUILTIN)}) "
                      "nor an existing folder or .zip file")
