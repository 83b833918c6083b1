"""One in-memory / on-disk representation for every data source.

An :class:`ImageSet` holds ``N`` images as a uint8 array of shape ``(N, H, W, C)`` (``C`` is 1 for
grayscale, 3 for colour), a stable string id per image, its source path (empty for bundled data),
optional integer labels with class names, and the list of files that were skipped with the reason.
It is cached in a directory as plain ``.npy`` files plus ``imageset.json`` so that a job or the
app reloads it memory-mapped in well under a second; the images themselves in shards
(:mod:`scan_core.data.shards`), each at most a setting's bytes, read back as one
:class:`~scan_core.data.shards.ShardedArray` (a cache written before shards holds one ``images.npy``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .artifacts import load_array, load_json, save_array, save_json
from .shards import Rows, ShardedArray, ShardWriter

CACHE_FORMAT = 2  # 1: one images.npy; 2: shards listed in imageset.json


@dataclass
class ImageSet:
    """Images ``(N, H, W, C)`` uint8 (an array, or shards) with ids, paths and optional labels."""

    name: str
    images: np.ndarray | ShardedArray
    ids: np.ndarray
    paths: np.ndarray
    labels: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        images = self.images
        if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] not in (1, 3):
            raise ValueError(
                f"{self.name}: images must be uint8 (N, H, W, C) with C in (1, 3), "
                f"got {images.dtype} {images.shape}")
        n = len(images)
        if len(self.ids) != n or len(self.paths) != n:
            raise ValueError(f"{self.name}: {n} images but {len(self.ids)} ids, {len(self.paths)} paths")
        if len(set(self.ids.tolist())) != n:
            raise ValueError(f"{self.name}: image ids are not unique")
        if self.labels is not None:
            if len(self.labels) != n:
                raise ValueError(f"{self.name}: {n} images but {len(self.labels)} labels")
            if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
                raise ValueError(f"{self.name}: labels must lie in [0, {len(self.class_names)})")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.has_labels else 0

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    def summary(self) -> dict:
        """Counts and shapes a UI or a config can show."""
        return {
            "name": self.name, "count": len(self), "height": self.image_size[0],
            "width": self.image_size[1], "channels": self.channels,
            "labelled": self.has_labels, "class_names": list(self.class_names),
            "skipped": len(self.skipped),
        }

    def save(self, directory: Path) -> None:
        """Write the set into ``directory`` (atomic files, no pickle); images a source already wrote
        there in shards (``load_source(..., cache=directory)``) are kept as they are."""
        directory = Path(directory)
        images = self.images
        if isinstance(images, ShardedArray) and images.directory == directory.resolve():
            shards = list(images.names)
        else:
            writer = ShardWriter(directory, "images", images.shape[1:], np.uint8)
            for start in range(0, len(images), writer.rows):
                writer.append(images[start:start + writer.rows])
            shards = writer.close()
        save_array(directory / "ids.npy", self.ids.astype(str))
        save_array(directory / "paths.npy", self.paths.astype(str))
        if self.labels is not None:
            save_array(directory / "labels.npy", self.labels.astype(np.int64))
        save_json(directory / "imageset.json", {
            "format": CACHE_FORMAT, "name": self.name, "class_names": self.class_names,
            "labelled": self.has_labels, "skipped": self.skipped, "count": len(self), "shards": shards})

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> ImageSet:
        """Read a set written by :meth:`save`; its arrays (images, ids, paths, labels) are memory-mapped
        when ``mmap``, else read whole."""
        directory = Path(directory)
        meta = load_json(directory / "imageset.json")
        if "shards" in meta:
            images: np.ndarray | ShardedArray = ShardedArray.load(directory, meta["shards"])
            images = images if mmap else np.asarray(images)
        else:
            images = load_array(directory / "images.npy", mmap=mmap)
        return cls(
            name=meta["name"], images=images,
            ids=load_array(directory / "ids.npy", mmap=mmap), paths=load_array(directory / "paths.npy", mmap=mmap),
            labels=load_array(directory / "labels.npy", mmap=mmap) if meta["labelled"] else None,
            class_names=list(meta["class_names"]), skipped=list(meta["skipped"]))


def resize_square(images: Rows, size: int | None, chunk: int = 4096) -> Rows:
    """Resize square uint8 ``(N, S, S, C)`` to ``(N, size, size, C)`` (bilinear, antialiased), in
    chunks of ``chunk`` images so that memory stays bounded; ``size`` None or S: returned as is."""
    if size is None or images.shape[1:3] == (size, size):
        return images
    import torch  # only here: reading a run's images needs no torch
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
