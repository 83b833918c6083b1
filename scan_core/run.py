"""A run: every SCAN stage on one dataset, written into a run directory, resumable.

Stages, in order (data flows one way):

    images -> pretext -> neighbors -> scan -> selflabel -> projection

Each stage writes its artifacts atomically, then records itself in ``status.json`` under
``completed``. Re-running on the same directory skips every completed stage whose artifacts load
back intact, and redoes the first one that is missing or corrupt and everything after it.

Artifacts: ``config.json``, ``images/`` (the cached :class:`ImageSet`), ``features.npy``,
``pretext.pt``, ``neighbors.npy``, ``scan_probs.npy``, ``scan.pt``, ``selflabel_probs.npy``,
``selflabel.pt``, ``projection.npy``, ``events.jsonl``, ``metrics.json``, ``status.json``.
"""
from __future__ import annotations

import io
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .artifacts import CorruptArtifact, load_array, load_json, save_array, save_bytes, save_json
from .augment import strong_view, to_tensor
from .backbones import build_backbone
from .clustering import ClusterHeads, predict, train_scan
from .images import ImageSet
from .metrics import evaluate
from .neighbors import fuse_neighbors, mine_neighbors, neighbor_purity
from .presets import RunConfig, make_config
from .pretext import Encoder, PixelPCA, SimCLRModel, embed, train_simclr
from .progress import Progress
from .selflabel import train_selflabel
from .sources import load_source

STAGES = ("images", "pretext", "neighbors", "scan", "selflabel", "projection")
STAGE_ARTIFACTS = {
    "images": ("images/imageset.json",),
    "pretext": ("features.npy", "pretext.pt"),
    "neighbors": ("neighbors.npy",),
    "scan": ("scan_probs.npy", "scan.pt"),
    "selflabel": ("selflabel_probs.npy", "selflabel.pt"),
    "projection": ("projection.npy",),
}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; asking for an absent CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def prepare_images(dataset: str, run_dir: Path, image_size: int | None = None) -> ImageSet:
    """Load ``dataset`` once into ``run_dir/images`` (or reload that cache, memory-mapped)."""
    cache = Path(run_dir) / "images"
    if ImageSet.exists(cache):
        try:
            return ImageSet.load(cache)
        except (CorruptArtifact, FileNotFoundError, KeyError, ValueError):
            pass  # a damaged cache is rebuilt from the source
    images = load_source(dataset, image_size=image_size)
    images.save(cache)
    return ImageSet.load(cache)


def plan_config(images: ImageSet, dataset: str, num_clusters: int | None, preset: str = "auto",
                **overrides) -> RunConfig:
    """Validate the request against the images and build the run's config (nothing runs yet)."""
    n = len(images)
    if num_clusters is None:
        if not images.has_labels:
            raise ValueError(f"{dataset}: no labels found, so --clusters K must be given")
        num_clusters = images.num_classes
    if num_clusters < 2:
        raise ValueError(f"--clusters must be at least 2, got {num_clusters}")
    if num_clusters > n:
        raise ValueError(f"--clusters {num_clusters} exceeds the {n} images of {dataset}")
    config = make_config(dataset, num_clusters, n, images.image_size[0], images.channels, preset, **overrides)
    if config.num_neighbors >= n:
        raise ValueError(f"{dataset} has {n} images: too few for {config.num_neighbors} neighbours each; "
                         f"need at least {config.num_neighbors + 1}")
    return config


@dataclass
class RunState:
    """What the stages hand on to each other (loaded from disk when a stage is skipped)."""

    images: ImageSet
    features: np.ndarray | None = None
    encoder: Encoder | None = None
    neighbors: np.ndarray | None = None
    probs: np.ndarray | None = None


class Run:
    """One run directory; :meth:`execute` runs (or resumes) every stage."""

    def __init__(self, run_dir: Path, config: RunConfig, show_bar: bool = True):
        self.dir = Path(run_dir)
        self.config = config
        self.device = resolve_device(config.device)
        self.progress = Progress(self.dir, show_bar=show_bar)

    # ---- bookkeeping -------------------------------------------------------------------------
    def status(self) -> dict:
        try:
            return load_json(self.dir / "status.json")
        except (FileNotFoundError, CorruptArtifact):
            return {"state": "new", "completed": []}

    def _set_status(self, **fields) -> None:
        status = {**self.status(), **fields, "updated": time.time(), "pid": os.getpid()}
        save_json(self.dir / "status.json", status)

    def metrics(self) -> dict:
        try:
            return load_json(self.dir / "metrics.json")
        except (FileNotFoundError, CorruptArtifact):
            return {}

    def _record(self, stage: str, values: dict) -> None:
        save_json(self.dir / "metrics.json", {**self.metrics(), stage: values})

    def _score(self, clusters: np.ndarray, labels: np.ndarray | None, seconds: float, **extra) -> dict:
        scores = evaluate(clusters, labels) if labels is not None else {}
        return {**scores, **extra, "seconds": round(seconds, 2)}

    def _completed(self, state: RunState) -> set[str]:
        """Stages recorded as completed whose artifacts are all present and readable."""
        done = set()
        for stage in STAGES:
            if stage not in self.status().get("completed", []):
                break
            if not all((self.dir / name).exists() for name in STAGE_ARTIFACTS[stage]):
                break
            try:
                self._load(stage, state)
            except (CorruptArtifact, FileNotFoundError, RuntimeError, ValueError):
                break
            done.add(stage)
        return done

    def _load(self, stage: str, state: RunState) -> None:
        if stage == "pretext":
            state.features = load_array(self.dir / "features.npy")
            state.encoder = self._encoder(state)
            state.encoder.load_state_dict(torch.load(self.dir / "pretext.pt", map_location=self.device,
                                                     weights_only=True))
            state.encoder.eval()
            if len(state.features) != len(state.images):
                raise CorruptArtifact("features.npy does not match the images")
        elif stage == "neighbors":
            state.neighbors = load_array(self.dir / "neighbors.npy")
            if state.neighbors.shape != (len(state.images), self.config.num_neighbors):
                raise CorruptArtifact("neighbors.npy has the wrong shape")
        elif stage in ("scan", "selflabel"):
            state.probs = load_array(self.dir / f"{stage}_probs.npy")
            if state.probs.shape != (len(state.images), self.config.num_clusters):
                raise CorruptArtifact(f"{stage}_probs.npy has the wrong shape")
        elif stage == "projection":
            load_array(self.dir / "projection.npy")

    def _encoder(self, state: RunState, fit: bool = False) -> Encoder:
        """The head-input encoder of ``config.head_input`` (a fresh backbone; PCA fitted if ``fit``)."""
        c, images = self.config, state.images.images
        parts: list[torch.nn.Module] = []
        if c.head_input in ("features", "both"):
            parts.append(build_backbone(c.backbone, state.images.channels, c.backbone_width))
        if c.head_input in ("pixels", "both"):
            parts.append(PixelPCA.fit(images, c.pixel_pca_dim, c.seed) if fit else
                         PixelPCA.empty(images, c.pixel_pca_dim))
        return Encoder(parts).to(self.device)

    # ---- driver ------------------------------------------------------------------------------
    def execute(self) -> dict:
        """Run every stage not yet completed; return ``metrics.json``'s content."""
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        save_json(self.dir / "config.json", {**self.config.to_dict(), "versions": versions()})
        state = RunState(images=prepare_images(self.config.dataset, self.dir, self.config.image_size))
        done = self._completed(state)
        completed = [s for s in STAGES if s in done]
        self._set_status(state="running", completed=completed, error=None, started=time.time())
        stages = [s for s in STAGES if s not in done and (s != "projection" or self.config.umap)]
        try:
            for stage in stages:
                self._set_status(stage=stage)
                self.progress.start(stage)
                torch.manual_seed(self.config.seed + STAGES.index(stage))
                started = time.time()
                getattr(self, f"_stage_{stage}")(state, started)
                self.progress.end()
                completed.append(stage)
                self._set_status(completed=completed)
        except BaseException as error:
            reason = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            self.progress.close_bar()
            self.progress.emit("error", error=f"{type(error).__name__}: {error}")
            self._set_status(state=reason, error=f"{type(error).__name__}: {error}")
            raise
        self._set_status(state="finished", stage=None)
        return self.metrics()

    # ---- stages ------------------------------------------------------------------------------
    def _stage_images(self, state: RunState, started: float) -> None:
        self._record("images", {**state.images.summary(), "seconds": round(time.time() - started, 2)})

    def _stage_pretext(self, state: RunState, started: float) -> None:
        c = self.config
        encoder = self._encoder(state, fit=True)
        if c.head_input != "pixels" and c.pretext.epochs:
            model = SimCLRModel(encoder.parts[0]).to(self.device, memory_format=torch.channels_last)
            train_simclr(model, state.images.images, c.pretext, c.augment, self.device,
                         self.progress.step, seed=c.seed)
        state.encoder = encoder.eval()
        state.features = embed(encoder, state.images.images, self.device)
        buffer = io.BytesIO()
        torch.save(encoder.state_dict(), buffer)
        save_bytes(self.dir / "pretext.pt", buffer.getvalue())
        save_array(self.dir / "features.npy", state.features)
        clusters = kmeans(state.features, c.num_clusters, c.seed)
        self._record("pretext", self._score(clusters, state.images.labels, time.time() - started,
                                            method="k-means on pretext features"))

    def _stage_neighbors(self, state: RunState, started: float) -> None:
        c = self.config
        spaces = []
        if c.neighbor_space in ("features", "fused"):
            spaces.append(state.features)
        if c.neighbor_space in ("pixels", "fused"):
            spaces.append(self._pixel_components(state))
        lists = [mine_neighbors(space, c.num_neighbors) for space in spaces]
        state.neighbors = lists[0] if len(lists) == 1 else fuse_neighbors(lists, c.num_neighbors)
        save_array(self.dir / "neighbors.npy", state.neighbors)
        extra = {"space": c.neighbor_space, "k": c.num_neighbors}
        if state.images.has_labels:
            extra["purity"] = neighbor_purity(state.neighbors, state.images.labels)
        self._record("neighbors", {**extra, "seconds": round(time.time() - started, 2)})

    def _stage_scan(self, state: RunState, started: float) -> None:
        c = self.config
        scan = replace(c.scan, num_neighbors=c.num_neighbors)
        heads = ClusterHeads(state.encoder.feature_dim, c.num_clusters, scan.num_heads, scan.hidden)
        model, train_inputs, eval_inputs = self._cluster_model(state, heads)
        best, losses = train_scan(model, train_inputs, eval_inputs, state.neighbors, scan, c.seed, self.progress.step)
        state.probs = predict(model, eval_inputs, len(state.images), best)
        self._save_model("scan", model, state.probs, best)
        self._record("scan", self._score(state.probs.argmax(1), state.images.labels, time.time() - started,
                                         head=best, head_losses=[round(x, 4) for x in losses]))

    def _stage_selflabel(self, state: RunState, started: float) -> None:
        c = self.config
        model, weak_inputs, strong_inputs = self._cluster_model(state, self._scan_head(state))
        single = _SingleHead(model)
        skipped = train_selflabel(single, weak_inputs, strong_inputs, len(state.images), c.selflabel,
                                  c.seed, self.progress.step)
        state.probs = predict(model, weak_inputs, len(state.images), 0)
        self._save_model("selflabel", model, state.probs)
        confident = float((state.probs.max(1) > c.selflabel.threshold).mean())
        self._record("selflabel", self._score(state.probs.argmax(1), state.images.labels, time.time() - started,
                                              skipped_batches=skipped, confident_share=confident))

    def _stage_projection(self, state: RunState, started: float) -> None:
        from .projection import umap_2d  # umap/numba import is slow: only when this stage runs
        save_array(self.dir / "projection.npy", umap_2d(state.features, seed=self.config.seed))
        self._record("projection", {"seconds": round(time.time() - started, 2)})

    # ---- helpers -----------------------------------------------------------------------------
    def _cluster_model(self, state: RunState, heads: torch.nn.Module):
        """``(model, augmented_inputs, clean_inputs)`` for the scan mode: heads on frozen feature
        banks, or backbone + heads on strongly augmented images."""
        c = self.config
        if c.scan_mode == "finetune":
            model = torch.nn.Sequential(state.encoder, heads).to(self.device)
            images = state.images.images
            return (model, lambda index: strong_view(to_tensor(images[np.sort(index)], self.device), c.augment),
                    lambda index: to_tensor(images[index], self.device))
        clean = torch.as_tensor(state.features, device=self.device)
        banks = self._feature_banks(state)
        rng = np.random.default_rng(c.seed)

        def augmented(index: np.ndarray) -> torch.Tensor:
            if banks is None:
                return clean[index]
            return banks[rng.integers(0, len(banks), len(index)), index]

        return heads.to(self.device), augmented, lambda index: clean[index]

    def _feature_banks(self, state: RunState) -> torch.Tensor | None:
        """Frozen-backbone features of ``feature_views`` strong views ``(V, N, D)``, cached."""
        c = self.config
        if not c.feature_views:
            return None
        path = self.dir / "feature_banks.npy"
        try:
            banks = load_array(path)
            if banks.shape == (c.feature_views, *state.features.shape):
                return torch.as_tensor(banks, device=self.device)
        except (FileNotFoundError, CorruptArtifact):
            pass
        banks = np.stack([embed(state.encoder, state.images.images, self.device,
                                view=lambda x: strong_view(x, c.augment)) for _ in range(c.feature_views)])
        save_array(path, banks)
        return torch.as_tensor(banks, device=self.device)

    def _pixel_components(self, state: RunState) -> np.ndarray:
        """Un-whitened PCA of the pixels ``(N, pixel_pca_dim)``, the pixel neighbour space."""
        pca = next((p for p in state.encoder.parts if isinstance(p, PixelPCA)), None)
        if pca is None:
            pca = PixelPCA.fit(state.images.images, self.config.pixel_pca_dim, self.config.seed).to(self.device)
        return embed(pca.project, state.images.images, self.device)

    def _scan_head(self, state: RunState) -> torch.nn.Module:
        """The kept SCAN head, loaded from ``scan.pt``, as a one-head :class:`ClusterHeads`."""
        c = self.config
        saved = torch.load(self.dir / "scan.pt", map_location=self.device, weights_only=True)
        heads = ClusterHeads(state.encoder.feature_dim, c.num_clusters, c.scan.num_heads, c.scan.hidden)
        heads.load_state_dict(saved["heads"])
        best = int(saved["best_head"])
        single = ClusterHeads(state.encoder.feature_dim, c.num_clusters, 1, c.scan.hidden)
        single.heads[0].load_state_dict(heads.heads[best].state_dict())
        if c.scan_mode == "finetune":
            state.encoder.load_state_dict(saved["encoder"])
        return single

    def _save_model(self, stage: str, model: torch.nn.Module, probs: np.ndarray, best_head: int = 0) -> None:
        heads = model[1] if isinstance(model, torch.nn.Sequential) else model
        saved = {"heads": heads.state_dict(), "best_head": torch.tensor(best_head)}
        if isinstance(model, torch.nn.Sequential):
            saved["encoder"] = model[0].state_dict()
        buffer = io.BytesIO()
        torch.save(saved, buffer)
        save_bytes(self.dir / f"{stage}.pt", buffer.getvalue())
        save_array(self.dir / f"{stage}_probs.npy", probs)


class _SingleHead(torch.nn.Module):
    """Adapts a one-head model's ``(1, B, K)`` output to ``(B, K)`` logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def kmeans(features: np.ndarray, k: int, seed: int = 0, niter: int = 50) -> np.ndarray:
    """faiss k-means (best of 3 restarts) on L2-normalised ``features`` -> cluster id ``(N,)``."""
    import faiss
    x = np.ascontiguousarray(features, dtype=np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    model = faiss.Kmeans(x.shape[1], k, niter=niter, nredo=3, seed=seed, spherical=True, verbose=False)
    model.train(x)
    return model.index.search(x, 1)[1].ravel()


def versions() -> dict:
    import faiss
    import sklearn
    import torchvision
    return {"scan_core": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__, "faiss": faiss.__version__,
            "scikit-learn": sklearn.__version__}


def train_run(run_dir: Path, dataset: str | None = None, num_clusters: int | None = None,
              preset: str = "auto", show_bar: bool = True, **overrides) -> dict:
    """Start or resume the run in ``run_dir``; return its metrics.

    A directory with a ``config.json`` resumes with that config (``dataset`` must match when given).
    """
    run_dir = Path(run_dir)
    saved = run_dir / "config.json"
    if saved.exists():
        stored = load_json(saved)
        stored.pop("versions", None)
        config = RunConfig.from_dict(stored)
        if dataset is not None and dataset != config.dataset:
            raise ValueError(f"{run_dir} holds a run on {config.dataset!r}, not {dataset!r}; "
                             "use another --out directory")
    else:
        if dataset is None:
            raise ValueError(f"{run_dir} holds no run; give a dataset to start one")
        images = prepare_images(dataset, run_dir, overrides.get("image_size"))
        config = plan_config(images, dataset, num_clusters, preset, **overrides)
    return Run(run_dir, config, show_bar=show_bar).execute()
