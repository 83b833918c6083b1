"""The built-in datasets: scikit-learn's digits (bundled), Fashion-MNIST (Debian package
``dataset-fashion-mnist``, else a torchvision download), CIFAR-10 and STL-10 (torchvision
downloads). Without a split the train and test splits are concatenated, train first; ids are
``dataset/split/00000``.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..images import ImageSet, resize_square
from .common import SourceError, check_image_size, data_dir_or_default

BUILTIN = ("digits", "fashion-mnist", "cifar10", "stl10")
SPLITS = {
    "digits": (),
    "fashion-mnist": ("train", "test"),
    "cifar10": ("train", "test"),
    "stl10": ("train", "test", "unlabeled"),
}
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


def load_digits(image_size: int | None = None) -> ImageSet:
    """scikit-learn's 1797 handwritten digits: ``(1797, S, S, 1)``, S = 16 unless ``image_size``."""
    from sklearn.datasets import load_digits as sklearn_digits

    image_size = check_image_size(image_size)
    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    images = resize_square(images, image_size or DIGITS_SIZE)
    labels = bunch.target.astype(np.int64)
    return _builtin_set("digits", None, [(None, images, labels)], [str(d) for d in range(10)])


def load_fashion_mnist(split: str | None = None, data_dir: Path | None = None,
                       image_size: int | None = None) -> ImageSet:
    """Fashion-MNIST ``(N, 28, 28, 1)``: train (60 000), test (10 000) or both (``split=None``).

    Looks for the gzip'd (or plain) IDX files in :data:`FASHION_DIRS`, ``data_dir/fashion-mnist``
    and torchvision's ``data_dir/FashionMNIST/raw``; downloads with torchvision if none is found.
    """
    split = check_split("fashion-mnist", split)
    image_size = check_image_size(image_size)
    data_dir = data_dir_or_default(data_dir)
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
        parts.append((name, resize_square(images[..., None], image_size), labels.astype(np.int64)))
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
    split = check_split(dataset, split)
    image_size = check_image_size(image_size)
    title, class_name, split_kwargs = _TORCHVISION[dataset]
    parts, classes = [], []
    for name in [split] if split else ["train", "test"]:
        data = _torchvision_dataset(title, class_name, data_dir, **split_kwargs(name))
        images = np.asarray(data.data, dtype=np.uint8)
        if images.shape[1] == 3:                      # STL-10 stores (N, 3, H, W)
            images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        labels = np.asarray(data.targets if hasattr(data, "targets") else data.labels, np.int64)
        parts.append((name, resize_square(images, image_size),
                      None if (labels < 0).any() else labels))   # STL-10 unlabeled: all -1
        classes = list(data.classes)
    return _builtin_set(dataset, split, parts, classes)


def check_split(dataset: str, split: str | None) -> str | None:
    if split and split not in SPLITS[dataset]:
        valid = ", ".join(SPLITS[dataset]) or "none"
        raise SourceError(f"{dataset} has no split {split!r} (splits: {valid})")
    return split or None


def _builtin_set(dataset: str, split: str | None, parts: list, class_names: list[str]) -> ImageSet:
    """Join ``[(split_name, images, labels), ...]`` into one set, ids ``dataset/split/00000``."""
    ids: list[str] = []
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
    except Exception as error:
        dirs = ", ".join(str(d) for d in FASHION_DIRS)
        raise SourceError(
            f"Fashion-MNIST not found (looked in {dirs} and {data_dir}) and could not download "
            f"it into {data_dir}: {error}. Install it with `sudo apt-get install "
            f"dataset-fashion-mnist`, or connect to the internet so it downloads into "
            f"{data_dir}.") from error


def _torchvision_dataset(title: str, class_name: str, data_dir: Path | None, **kwargs):
    """Instantiate ``torchvision.datasets.<class_name>(root=data_dir, download=True, **kwargs)``."""
    data_dir = data_dir_or_default(data_dir)
    try:
        from torchvision import datasets

        data_dir.mkdir(parents=True, exist_ok=True)
        return getattr(datasets, class_name)(root=str(data_dir), download=True, **kwargs)
    except Exception as error:
        raise SourceError(f"could not download {title} into {data_dir}: {error}; connect to the "
                          "internet or place the files there") from error
