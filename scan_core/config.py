"""Every setting of a run, as plain frozen dataclasses: the options a user can choose, each
stage's hyperparameters, and :class:`RunConfig`, which gathers them and is written to a run's
``config.json``.

This module is data only (no torch), so the app reads the same option lists the engine checks.
Each choice is a ``Literal`` type; :func:`check_fields` validates every ``Literal`` field of a
config against its type, the one place options are checked. :func:`from_dict` rebuilds any config
from its ``asdict`` form, nested configs included.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, get_args, get_origin

from .pretrained import CLASSIFYING

Device = Literal["auto", "cpu", "cuda"]
Backbone = Literal["small-cnn", "resnet18-cifar",   # trained here (SimCLR); the rest are pretrained, frozen
                   "dinov2-vitb14", "dinov2-vits14", "clip-vitb16", "vit-b16-imagenet", "resnet50-imagenet",
                   "efficientnet-lite2-imagenet", "efficientnet-lite0-imagenet", "resnet18-imagenet"]
HeadInput = Literal["features", "pixels", "both", "hog"]   # what heads see: SimCLR features, pixel PCA, both,
#                                                             or the HOG's PCA (no network)
NETWORK_HEAD_INPUTS: tuple[str, ...] = ("features", "both")  # the head inputs that need a network's features
NeighborSpace = Literal["features", "pixels", "fused", "hog", "manifold"]  # fused: rank fusion of features and
#                                                                     pixels; manifold: the UMAP embedding
ScanMode = Literal["frozen", "finetune"]                   # heads on cached features, or end to end
ScanLoss = Literal["scan", "temi"]                         # the heads' objective (scan_core.method.clustering)
SizePrior = Literal["equal", "kmeans"]                     # the cluster sizes SCAN's loss pulls toward
Precision = Literal["auto", "float32", "bfloat16", "float16"]  # of the forward passes (scan_core.method.precision)
DeviceKind = Literal["cpu", "cuda"]                        # the kinds of device the cost tables know

DEVICES: tuple[str, ...] = get_args(Device)
SCAN_LOSSES: tuple[str, ...] = get_args(ScanLoss)
SIZE_PRIORS: tuple[str, ...] = get_args(SizePrior)
BACKBONES: tuple[str, ...] = get_args(Backbone)
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: Up to this many images neighbours are mined exactly; above it, on an HNSW graph
#: (:mod:`scan_core.method.neighbors`; on 2 cores HNSW is the faster from about 50,000 points).
EXACT_SEARCH_LIMIT = 50_000
#: Past this many images the UMAP manifold and the 2-D map are fitted on a random sample of this
#: many and the rest placed by UMAP's transform (:mod:`scan_core.method.manifold`).
MAP_SAMPLE = 100_000
#: Feature banks of more than this many bytes in float32 are kept in float16 on disk
#: (half the bytes; the heads read them a batch at a time in float32).
FLOAT16_BYTES = 1024 ** 3
#: The most bytes the approximate neighbour index (an HNSW graph) may hold in memory; a larger one
#: keeps its rows in inverted lists in a memory-mapped file (:mod:`scan_core.method.neighbors`).
INDEX_MEMORY = 1024 ** 3
PRETRAINED: tuple[str, ...] = BACKBONES[2:]   # scan_core.pretrained.PRETRAINED_BACKBONES, in order
AUTO = "auto"  # --clusters auto: K suggested from the run's features (the suggest stage)
#: Keys of nested configs that older runs wrote and that are no longer settings (read and dropped).
RETIRED_KEYS = {"scan": ("num_clusters", "num_neighbors")}
REFINE_EPOCHS = 30  # a refine's epochs unless asked otherwise: about a minute on 70k images on 2 cores

#: RandAugment ops of SCAN's strong view, in the order :mod:`scan_core.method.augment` draws them.
STRONG_OPS = ("identity", "rotate", "shear_x", "shear_y", "translate_x", "translate_y", "autocontrast",
              "equalize", "solarize", "color", "contrast", "brightness", "sharpness", "posterize")


def check_fields(config) -> None:
    """ValueError naming the field when a ``Literal`` field of the dataclass ``config`` holds a
    value outside its choices."""
    for name, kind in typing.get_type_hints(type(config)).items():
        if get_origin(kind) is Literal and getattr(config, name) not in get_args(kind):
            choices = ", ".join(map(str, get_args(kind)))
            raise ValueError(f"{name} must be one of {choices}; got {getattr(config, name)!r}")


if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Config = TypeVar("Config", bound="DataclassInstance")


def from_dict(cls: type[Config], data: dict) -> Config:
    """The dataclass ``cls`` from ``data`` (as :func:`dataclasses.asdict` wrote it, e.g. read back
    from JSON): nested dataclass fields are rebuilt from their dicts, lists become tuples where
    the field is a tuple. Unknown keys are a ValueError."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        kind = hints[name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind) and isinstance(value, dict):
            value = from_dict(kind, value)
        elif get_origin(kind) is tuple and isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the SimCLR and strong views for one kind of data."""

    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip: bool = True
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    strong_ops: int = 4
    cutout: float = 0.5  # largest side of the Cutout hole, as a fraction of the image side

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if self.strong_ops < 0 or self.strong_ops > len(STRONG_OPS):
            raise ValueError(f"strong_ops must lie in [0, {len(STRONG_OPS)}], got {self.strong_ops}")
        if not 0 <= self.cutout <= 1:
            raise ValueError(f"cutout must lie in [0, 1], got {self.cutout}")


@dataclass(frozen=True)
class PretextConfig:
    """SimCLR training (:mod:`scan_core.method.pretext`); ``epochs`` 0: none, a pretrained
    backbone's features are used as they are (frozen)."""

    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.4           # SGD, scaled by batch_size / 256
    weight_decay: float = 1e-4
    temperature: float = 0.1
    warmup_epochs: float = 0.5

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"pretext epochs (--pretext-epochs) must be at least 0, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"pretext batch_size must be at least 2 (SimCLR contrasts the images "
                             f"of a batch), got {self.batch_size}")


@dataclass(frozen=True)
class ScanConfig:
    """SCAN heads (:mod:`scan_core.method.clustering`); the neighbours come from the run's
    ``num_neighbors`` and ``K`` from its ``num_clusters``. ``loss``: SCAN's (Van Gansbeke et al.
    2020) or TEMI's (Adaloglou et al. 2023: ``beta``, EMA teacher heads of ``teacher_momentum``, a
    cluster prior of ``prior_momentum``); ``size_prior``: the cluster sizes SCAN's entropy term
    pulls toward, equal or those of k-means clusters of the heads' input."""

    num_heads: int = 10
    hidden: int = 0
    entropy_weight: float = 5.0
    loss: ScanLoss = "scan"
    size_prior: SizePrior = "equal"
    beta: float = 0.6
    teacher_momentum: float = 0.9      # per step; TEMI's 0.996 is for thousands of steps, heads here take tens to hundreds
    prior_momentum: float = 0.9
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    val_neighbors: int = 5
    snapshots: int = 5                 # epochs of the second half at which every head is a candidate

    def __post_init__(self) -> None:
        check_fields(self)
        if self.num_heads < 1:
            raise ValueError(f"scan num_heads must be at least 1, got {self.num_heads}")
        if self.loss == "temi" and self.size_prior != "equal":
            raise ValueError(f"size_prior {self.size_prior!r} applies to the scan loss; the temi loss (--loss temi) "
                             f"learns its cluster prior from the teacher heads")
        if not 0 < self.beta <= 1:
            raise ValueError(f"scan beta (TEMI's exponent) must lie in (0, 1], got {self.beta}")
        if not (0 <= self.teacher_momentum < 1 and 0 <= self.prior_momentum < 1):
            raise ValueError(f"scan teacher_momentum and prior_momentum must lie in [0, 1), got "
                             f"{self.teacher_momentum} and {self.prior_momentum}")
        if self.epochs < 1:
            raise ValueError(f"scan epochs (--scan-epochs) must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"scan batch_size must be at least 1, got {self.batch_size}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        if self.snapshots < 1:
            raise ValueError(f"scan snapshots must be at least 1 (the last epoch), got {self.snapshots}")


@dataclass(frozen=True)
class SelfLabelConfig:
    """Self-labeling (:mod:`scan_core.method.selflabel`)."""

    epochs: int = 5
    batch_size: int = 512
    lr: float = 1e-4
    weight_decay: float = 1e-4
    threshold: float = 0.99
    feature_noise: float = 0.1  # without feature banks, the strong view of a frozen feature: Gaussian noise of this
    #                             many of its per-dimension standard deviations (the clean feature itself taught nothing)

    def __post_init__(self) -> None:
        if self.feature_noise < 0:
            raise ValueError(f"self-label feature_noise must be >= 0, got {self.feature_noise}")
        if self.epochs < 1:
            raise ValueError(f"self-label epochs (--selflabel-epochs) must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"self-label batch_size must be at least 1, got {self.batch_size}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"self-label threshold must lie in (0, 1), got {self.threshold}")


@dataclass(frozen=True)
class Hardware:
    """What a run is planned for (:mod:`scan_core.costs`, the ``auto`` preset): the ``kind`` of
    device it trains on, its ``name``, and its ``speed``: how many times faster than the reference
    device of that kind (the 2-core CPU of the benchmarks; for CUDA, the GPU of the published
    figures in :data:`scan_core.costs.PRETRAINED_COSTS`) a ResNet-18 pass ran when measured at the
    start of the run (1: not measured)."""

    kind: DeviceKind = "cpu"
    speed: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.speed > 0:
            raise ValueError(f"hardware speed must be positive, got {self.speed}")


REFERENCE_CPU = Hardware()  # the 2-core CPU every cost table was measured on


@dataclass(frozen=True)
class RefineConfig:
    """Refining the run's result with the user's image labels (:mod:`scan_core.method.refine`), when
    a request asks for it (``refine_labels.json``, which also names its epochs: ``python -m scan_core
    refine RUN --epochs``); ``epochs``: a request's epochs unless it says otherwise."""

    epochs: int = REFINE_EPOCHS
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    alpha: float = 0.8         # how far labels spread over the neighbour graph (0: not at all, 1: everywhere)
    prior_weight: float = 0.1  # the model's own probabilities against a label's 1
    #                            (both chosen from the labels by cross-validation when there are enough)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"refine epochs (--epochs) must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"refine batch_size must be at least 1, got {self.batch_size}")
        if not 0 < self.alpha < 1 or self.prior_weight < 0:
            raise ValueError(f"refine needs 0 < alpha < 1 and prior_weight >= 0, got {self.alpha} and {self.prior_weight}")

    def asked_by(self, request: dict) -> RefineConfig:
        """These settings with the epochs a refine request (``refine_labels.json``) asks for."""
        return dataclasses.replace(self, epochs=int(request.get("epochs", self.epochs)))


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; ``dataset`` is a built-in name, a folder or a zip; ``preset`` the
    name of the :mod:`scan_core.presets` entry it was made from."""

    dataset: str
    num_clusters: int                  # K; 0 with suggest_clusters: not known yet (the suggest stage sets it)
    preset: str = "auto"
    seed: int = 0
    device: Device = "cpu"
    precision: Precision = "auto"      # auto: bfloat16 (or float16) on a CUDA GPU, float32 on a CPU
    hardware: Hardware = field(default_factory=Hardware)  # what the run was planned for (auto)
    backbone: Backbone = "small-cnn"
    backbone_width: int = 32
    pretrained_size: int = 128         # the side an ImageNet backbone resizes images to
    class_view: bool = False           # its ImageNet class scores, lifted through WordNet, beside its features
    #                                    (scan_core.method.class_view; a frozen backbone of CLASSIFYING)
    image_size: int | None = None
    pretext: PretextConfig = field(default_factory=PretextConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    head_input: HeadInput = "features"
    neighbor_space: NeighborSpace = "fused"
    pixel_pca_dim: int = 100
    hog_dim: int = 128                 # PCA components of the HOG (head_input or neighbor_space "hog")
    manifold_dims: int = 0             # > 0: heads learn on a UMAP embedding of the features this wide
    num_neighbors: int = 20
    exact_search_limit: int = EXACT_SEARCH_LIMIT  # the most images mined exactly; above it, HNSW
    index_memory: int = INDEX_MEMORY   # the most bytes the HNSW graph may take; a larger index's lists are on disk
    scan: ScanConfig = field(default_factory=ScanConfig)
    scan_mode: ScanMode = "frozen"
    feature_views: int = 4             # augmented feature banks for frozen heads
    float16_above: int = FLOAT16_BYTES  # banks larger than this in float32 are kept in float16 (0: always)
    selflabel: SelfLabelConfig = field(default_factory=SelfLabelConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    umap: bool = True
    map_sample: int = MAP_SAMPLE       # the most images UMAP (manifold, map) is fitted on; the rest are placed
    suggest_clusters: bool = False     # K suggested from the run's features (--clusters auto)
    time_budget: float = 0.0           # seconds the whole run should take (0: none): SimCLR's epochs are
    #                                    cut to what is left of it, from its measured step time
    note: str = ""                     # what the auto preset had to fall back on, and why (shown before a run)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.time_budget < 0:
            raise ValueError(f"time_budget (--time-budget) must be 0 (none) or positive seconds, got {self.time_budget}")
        if self.num_clusters < 2 and not (self.suggest_clusters and self.num_clusters == 0):
            raise ValueError(f"--clusters must be at least 2, got {self.num_clusters}")
        if self.num_neighbors < 1:
            raise ValueError(f"num_neighbors must be >= 1, got {self.num_neighbors}")
        if self.map_sample < 10:
            raise ValueError(f"map_sample must be at least 10 images, got {self.map_sample}")
        if self.exact_search_limit < 0:
            raise ValueError(f"exact_search_limit must be >= 0 (0: always approximate), got {self.exact_search_limit}")
        if self.index_memory < 0:
            raise ValueError(f"index_memory must be >= 0 bytes (0: always on disk), got {self.index_memory}")
        if self.feature_views < 0:
            raise ValueError(f"feature_views must be >= 0, got {self.feature_views}")
        if self.float16_above < 0:
            raise ValueError(f"float16_above must be >= 0 bytes (0: always float16), got {self.float16_above}")
        if self.manifold_dims < 0 or self.manifold_dims == 1:
            raise ValueError(f"manifold_dims must be 0 (none) or at least 2, got {self.manifold_dims}")
        if self.neighbor_space == "manifold" and not self.manifold_dims:
            raise ValueError("neighbor_space 'manifold' needs manifold_dims > 0")
        if self.pretext.epochs == 0 and self.uses_backbone and self.backbone not in PRETRAINED:
            raise ValueError(f"pretext epochs 0 (no SimCLR) needs a pretrained backbone ({', '.join(PRETRAINED)}); "
                             f"{self.backbone} would give the features of random weights")
        if self.class_view and not (self.uses_backbone and self.backbone in CLASSIFYING and self.pretext.epochs == 0):
            raise ValueError(f"class_view needs a frozen backbone with its ImageNet classifier ({', '.join(CLASSIFYING)}, "
                             f"pretext epochs 0), not {self.backbone} with {self.pretext.epochs} pretext epochs")
        if self.pretrained_size < 16:
            raise ValueError(f"pretrained_size must be at least 16 pixels, got {self.pretrained_size}")
        if self.manifold_dims and self.scan_mode != "frozen":
            raise ValueError("a manifold (manifold_dims > 0) needs scan_mode 'frozen': the heads learn on its fixed embedding")

    @property
    def uses_backbone(self) -> bool:
        """Whether the heads see a network's features (trained with SimCLR, or pretrained)."""
        return self.head_input in NETWORK_HEAD_INPUTS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        return from_dict(cls, data)

    @classmethod
    def load(cls, run_dir: Path) -> RunConfig:
        """The config in ``run_dir/config.json``, without the versions and world size it also records and the keys
        older runs wrote (:data:`RETIRED_KEYS`); ValueError naming the file when it is not JSON."""
        path = Path(run_dir) / "config.json"
        try:
            stored = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: invalid JSON ({error})") from error
        stored.pop("versions", None)
        stored.pop("world_size", None)
        for section, keys in RETIRED_KEYS.items():
            for key in keys:
                stored.get(section, {}).pop(key, None)
        if stored.get("refine", {}).get("epochs") == 0:  # how a run said "no refine" before requests did
            del stored["refine"]["epochs"]
        return cls.from_dict(stored)
