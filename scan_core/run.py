"""A run: every SCAN stage on one dataset, written into a run directory, resumable.

Stages, in order (data flows one way):

    images -> pretext -> neighbors -> scan -> selflabel -> projection

Each stage writes its artifacts atomically, then records itself in ``status.json`` under
``completed``. Re-running on the same directory skips every completed stage whose artifacts load
back intact, and redoes the first one that is missing or corrupt and everything after it. The
training stages ``pretext`` and ``scan`` also save a checkpoint after every epoch
(``checkpoints/<stage>.pt``, deleted when the stage completes), so that a killed run continues
within the stage from its last finished epoch; an event ``resumed`` with ``epoch`` says so.

Artifacts: ``config.json``, ``images/`` (the cached :class:`ImageSet`), ``report.json`` (the
files of the source that were skipped and why), ``features.npy``, ``pretext.pt``,
``neighbors.npy``, ``scan_probs.npy``, ``scan.pt``, ``selflabel_probs.npy``, ``selflabel.pt``,
``projection.npy``, ``events.jsonl``, ``metrics.json``, ``status.json``.

``status.json`` (read it with :func:`read_status`) always holds ``state``, ``stage`` (running or
last run; None when finished), ``completed`` (stages done, in order), ``error`` (None or the
message), ``pid`` and ``pid_start`` (the training process and its start time, to recognise it)
and ``updated`` (unix time). ``state`` is one of ``new`` (nothing started), ``running``,
``finished``, ``failed`` (an error: ``error`` says which), ``cancelled`` (SIGTERM, ``error``
"cancelled by user"), ``interrupted`` (SIGINT, or the process died without a word: SIGKILL, a
crash). Running :func:`train_run` again on the directory resumes any but a finished run.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .artifacts import (Checkpoint, CorruptArtifact, load_array, load_json, load_torch, save_array,
                        save_json, save_torch)
from .augment import strong_view, to_tensor
from .backbones import build_backbone
from .clustering import ClusterHeads, predict, train_scan
from .hog import hog_space
from .images import ImageSet
from .metrics import evaluate
from .neighbors import fuse_neighbors, mine_neighbors, neighbor_purity
from .presets import RunConfig, check_preset, make_config
from .pretext import Encoder, PixelPCA, SimCLRModel, embed, train_simclr
from .progress import Progress
from .selflabel import train_selflabel
from .sources import load_source

STAGES = ("images", "pretext", "neighbors", "scan", "selflabel", "projection")
STAGE_ARTIFACTS = {
    "images": ("images/imageset.json", "report.json"),
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


INTERRUPTED = "the training process ended unexpectedly (killed?)"


class Cancelled(BaseException):
    """Raised in the training process when the user cancels it (the CLI turns SIGTERM into it).

    Like KeyboardInterrupt it is no ``Exception``, so no ``except Exception`` swallows it; the
    run ends as ``cancelled``.
    """


def read_status(run_dir: Path) -> dict:
    """A run's ``status.json`` (fields and states: module docstring), for a UI to show.

    A ``running`` run whose training process is gone (SIGKILL, a crash, a reboot) is returned as
    ``interrupted`` with the error :data:`INTERRUPTED`; so is one whose pid now belongs to another
    process (told apart by its start time, from ``/proc``). A directory without a readable status
    reads as ``new``.
    """
    status = _stored_status(Path(run_dir))
    if status["state"] == "running" and not _process_alive(status["pid"], status.get("pid_start")):
        status.update(state="interrupted", error=INTERRUPTED)
    return status


def _stored_status(run_dir: Path) -> dict:
    new = {"state": "new", "stage": None, "completed": [], "error": None, "pid": None, "updated": None}
    try:
        return {**new, **load_json(run_dir / "status.json")}
    except (FileNotFoundError, CorruptArtifact):
        return new


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state letter, start time in clock ticks after boot)`` of ``pid``; None without ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[19])


def _process_alive(pid: int | None, started: int | None) -> bool:
    """Whether ``pid`` is still the live process that started at ``started`` (a zombie, or a
    recycled pid with another start time, is not); without ``/proc`` any live ``pid`` counts."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, run by another user
    stat = _proc_stat(pid)
    return stat is None or (stat[0] != "Z" and started in (None, stat[1]))


def check_writable(run_dir: Path) -> None:
    """Create ``run_dir`` if needed and write a scratch file there; ValueError if that fails."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as error:
        raise ValueError(f"cannot write to {run_dir}: {error.strerror or error}") from error


def plan_config(images: ImageSet, dataset: str, num_clusters: int | None, preset: str = "auto",
                **overrides) -> RunConfig:
    """Validate the request against the images and build the run's config (nothing runs yet)."""
    n = len(images)
    if num_clusters is None:
        if images.num_classes < 2:
            found = f"only {images.num_classes} class" if images.has_labels else "no labels"
            raise ValueError(f"{dataset}: {found} found, so --clusters K must be given")
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

    images: ImageSet | None = None
    features: np.ndarray | None = None
    encoder: Encoder | None = None
    neighbors: np.ndarray | None = None
    probs: np.ndarray | None = None


class Run:
    """One run directory; :meth:`execute` runs (or resumes) every stage."""

    def __init__(self, run_dir: Path, config: RunConfig, show_bar: bool = True,
                 images: ImageSet | None = None):
        """``images``: the source, when already loaded (the images stage saves it, else loads it)."""
        self.dir = Path(run_dir)
        self.config = config
        self.device = resolve_device(config.device)
        self.progress = Progress(self.dir, show_bar=show_bar)
        self._source = images
        stat = _proc_stat(os.getpid())
        self._process = {"pid": os.getpid(), "pid_start": stat[1] if stat else None}

    # ---- bookkeeping -------------------------------------------------------------------------
    def _set_status(self, **fields) -> None:
        status = {**_stored_status(self.dir), **fields, **self._process, "updated": time.time()}
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

    def _completed(self, state: RunState) -> list[str]:
        """The leading stages recorded as completed whose artifacts are all present and readable
        (loaded into ``state``)."""
        recorded, done = _stored_status(self.dir)["completed"], []
        for stage in STAGES:
            if stage not in recorded:
                break
            if not all((self.dir / name).exists() for name in STAGE_ARTIFACTS[stage]):
                break
            try:
                self._load(stage, state)
            except (CorruptArtifact, FileNotFoundError, KeyError, RuntimeError, ValueError):
                break
            done.append(stage)
        return done

    def _load(self, stage: str, state: RunState) -> None:
        if stage == "images":
            load_json(self.dir / "report.json")
            state.images = ImageSet.load(self.dir / "images")
        elif stage == "pretext":
            state.features = load_array(self.dir / "features.npy")
            state.encoder = build_encoder(self.config, state.images, self.device)
            state.encoder.load_state_dict(load_torch(self.dir / "pretext.pt", self.device))
            state.encoder.eval()
            if len(state.features) != len(state.images):
                raise CorruptArtifact("features.npy does not match the images")
        elif stage == "neighbors":
            state.neighbors = load_array(self.dir / "neighbors.npy")
            if state.neighbors.shape != (len(state.images), self.config.num_neighbors):
                raise CorruptArtifact("neighbors.npy has the wrong shape")
        elif stage in ("scan", "selflabel"):
            load_torch(self.dir / f"{stage}.pt")  # read by later stages and the app: must be intact
            state.probs = load_array(self.dir / f"{stage}_probs.npy")
            if state.probs.shape != (len(state.images), self.config.num_clusters):
                raise CorruptArtifact(f"{stage}_probs.npy has the wrong shape")
        elif stage == "projection":
            load_array(self.dir / "projection.npy")

    def _checkpoint(self, stage: str) -> Checkpoint:
        """The per-epoch checkpoint of a training stage; resuming from it emits ``resumed``."""
        return Checkpoint(self.dir / "checkpoints" / f"{stage}.pt",
                          on_resume=lambda epoch: self.progress.emit("resumed", epoch=epoch))

    # ---- driver ------------------------------------------------------------------------------
    def execute(self) -> dict:
        """Run every stage not yet completed; return ``metrics.json``'s content.

        Whatever stops it is recorded in ``status.json`` (``cancelled`` for :class:`Cancelled`,
        ``interrupted`` for KeyboardInterrupt, else ``failed``) and raised again.
        """
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        save_json(self.dir / "config.json", {**self.config.to_dict(), "versions": versions()})
        state = RunState()
        completed = self._completed(state)
        self._set_status(state="running", stage=None, completed=completed, error=None, started=time.time())
        stages = [s for s in STAGES if s not in completed and (s != "projection" or self.config.umap)]
        for stage in stages[1:]:  # their inputs are about to be recomputed: saved epochs are stale
            self._checkpoint(stage).clear()
        try:
            for stage in stages:
                self._set_status(stage=stage)
                self.progress.start(stage)
                torch.manual_seed(self.config.seed + STAGES.index(stage))
                started = time.time()
                getattr(self, f"_stage_{stage}")(state, started)
                self._checkpoint(stage).clear()
                self.progress.end()
                completed.append(stage)
                self._set_status(completed=completed)
        except BaseException as error:
            outcome, message = _outcome(error)
            self.progress.close_bar()
            self.progress.emit("error", state=outcome, error=message)
            self._set_status(state=outcome, error=message)
            raise
        self._set_status(state="finished", stage=None)
        return self.metrics()

    # ---- stages ------------------------------------------------------------------------------
    def _stage_images(self, state: RunState, started: float) -> None:
        images, self._source = self._source, None  # the saved, memory-mapped copy replaces it
        if images is None:
            images = load_source(self.config.dataset, image_size=self.config.image_size,
                                 progress=self.progress.step)
        images.save(self.dir / "images")
        state.images = ImageSet.load(self.dir / "images")
        save_json(self.dir / "report.json", {"dataset": self.config.dataset, "loaded": len(images),
                                             "skipped": len(images.skipped), "skipped_files": images.skipped})
        self._record("images", {**state.images.summary(), "seconds": round(time.time() - started, 2)})

    def _stage_pretext(self, state: RunState, started: float) -> None:
        c = self.config
        encoder = build_encoder(c, state.images, self.device, fit=True)
        if c.head_input != "pixels":
            model = SimCLRModel(encoder.parts[0]).to(self.device, memory_format=torch.channels_last)
            train_simclr(model, state.images.images, c.pretext, c.augment, self.device,
                         self.progress.step, seed=c.seed, checkpoint=self._checkpoint("pretext"))
        state.encoder = encoder.eval()
        state.features = embed(encoder, state.images.images, self.device)
        save_torch(self.dir / "pretext.pt", encoder.state_dict())
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
        if c.neighbor_space == "hog":
            spaces.append(hog_space(state.images.images, seed=c.seed, device=self.device))
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
        model, augmented, clean = self._cluster_model(state, heads)
        best, losses = train_scan(model, augmented, clean, state.neighbors, scan, c.seed,
                                  self.progress.step, checkpoint=self._checkpoint("scan"))
        state.probs = predict(model, clean, len(state.images), best)
        self._save_model("scan", model, state.probs, best)
        self._record("scan", self._score(state.probs.argmax(1), state.images.labels, time.time() - started,
                                         head=best, head_losses=[round(x, 4) for x in losses]))

    def _stage_selflabel(self, state: RunState, started: float) -> None:
        c = self.config
        model, augmented, clean = self._cluster_model(state, self._scan_head(state))
        skipped = train_selflabel(_SingleHead(model), weak_inputs=clean, strong_inputs=augmented,
                                  n=len(state.images), config=c.selflabel, seed=c.seed, on_step=self.progress.step)
        state.probs = predict(model, clean, len(state.images), 0)
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
            return (model, lambda index: strong_view(to_tensor(images[index], self.device), c.augment),
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
        """The kept SCAN head of ``scan.pt`` (its fine-tuned encoder loaded into ``state``)."""
        saved = load_torch(self.dir / "scan.pt", self.device)
        if "encoder" in saved:
            state.encoder.load_state_dict(saved["encoder"])
        return kept_head(saved, state.encoder.feature_dim, self.config)

    def _save_model(self, stage: str, model: torch.nn.Module, probs: np.ndarray, best_head: int = 0) -> None:
        heads = model[1] if isinstance(model, torch.nn.Sequential) else model
        saved = {"heads": heads.state_dict(), "best_head": torch.tensor(best_head)}
        if isinstance(model, torch.nn.Sequential):
            saved["encoder"] = model[0].state_dict()
        save_torch(self.dir / f"{stage}.pt", saved)
        save_array(self.dir / f"{stage}_probs.npy", probs)


def build_encoder(config: RunConfig, images: ImageSet, device: torch.device, fit: bool = False) -> Encoder:
    """The encoder of ``config.head_input`` for the run's ``images``: a fresh backbone and/or a
    pixel PCA (fitted on ``images`` if ``fit``, else shaped to load a saved state into)."""
    parts: list[torch.nn.Module] = []
    if config.head_input in ("features", "both"):
        parts.append(build_backbone(config.backbone, images.channels, config.backbone_width))
    if config.head_input in ("pixels", "both"):
        parts.append(PixelPCA.fit(images.images, config.pixel_pca_dim, config.seed) if fit else
                     PixelPCA.empty(images.images, config.pixel_pca_dim))
    return Encoder(parts).to(device)


def kept_head(saved: dict, feature_dim: int, config: RunConfig) -> ClusterHeads:
    """The head a cluster stage kept (``saved``: its ``scan.pt`` / ``selflabel.pt``), alone in a
    one-head :class:`ClusterHeads`: ``(B, feature_dim) -> (1, B, K)``."""
    num_heads = len({key.split(".")[1] for key in saved["heads"] if key.startswith("heads.")})
    heads = ClusterHeads(feature_dim, config.num_clusters, num_heads, config.scan.hidden)
    heads.load_state_dict(saved["heads"])
    single = ClusterHeads(feature_dim, config.num_clusters, 1, config.scan.hidden)
    single.heads[0].load_state_dict(heads.heads[int(saved["best_head"])].state_dict())
    return single


class _SingleHead(torch.nn.Module):
    """Adapts a one-head model's ``(1, B, K)`` output to ``(B, K)`` logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def _outcome(error: BaseException) -> tuple[str, str]:
    """The state a run ends in when ``error`` stops it, and the message recorded with it."""
    if isinstance(error, Cancelled):
        return "cancelled", "cancelled by user"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", "interrupted by the user (SIGINT)"
    return "failed", f"{type(error).__name__}: {error}"


def kmeans(features: np.ndarray, k: int, seed: int = 0, niter: int = 50) -> np.ndarray:
    """faiss k-means (best of 3 restarts) on L2-normalised ``features`` -> cluster id ``(N,)``."""
    import faiss
    x = np.asarray(features, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # a new array: the input stays as it is
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


def saved_config(run_dir: Path) -> RunConfig:
    """The :class:`RunConfig` in ``run_dir/config.json`` (without the versions it also records)."""
    stored = load_json(Path(run_dir) / "config.json")
    stored.pop("versions", None)
    return RunConfig.from_dict(stored)


def train_run(run_dir: Path, dataset: str | None = None, num_clusters: int | None = None,
              preset: str = "auto", show_bar: bool = True, **overrides) -> dict:
    """Start or resume the run in ``run_dir``; return its metrics.

    A directory with a ``config.json`` resumes with that config (``dataset`` must match when
    given; the other arguments are ignored). A new run is validated first (dataset, preset,
    clusters, parameters: :func:`plan_config`), then ``run_dir`` must be writable; either failing
    raises ValueError before anything is written into ``run_dir``.
    """
    run_dir = Path(run_dir)
    saved = run_dir / "config.json"
    images = None
    if saved.exists():
        config = saved_config(run_dir)
        if dataset is not None and dataset != config.dataset:
            raise ValueError(f"{run_dir} holds a run on {config.dataset!r}, not {dataset!r}; "
                             "use another --out directory")
    else:
        if dataset is None:
            raise ValueError(f"{run_dir} holds no run; give a dataset to start one")
        check_preset(preset)
        images = load_source(dataset, image_size=overrides.get("image_size"))
        config = plan_config(images, dataset, num_clusters, preset, **overrides)
    check_writable(run_dir)
    run = Run(run_dir, config, show_bar=show_bar, images=images)
    del images  # the images stage saves them and goes on with the memory-mapped copy
    return run.execute()
