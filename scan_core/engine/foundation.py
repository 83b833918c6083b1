"""A new ``auto`` run's foundation backbone: fetched before the run is planned for good, when none is
on this machine and one would be chosen if it were (:func:`scan_core.presets.foundation_to_fetch`),
downloads are allowed (:func:`scan_core.data.weights.offline`) and the hub answers
(:func:`scan_core.data.weights.network_available`). The download's progress goes to the terminal bar and
to ``events.jsonl`` as steps in MB of the ``images`` stage (the app shows a run that has not begun as
starting that stage); the config's ``note`` says what was fetched and why, or what a stronger
backbone would need."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..config import Hardware, RunConfig
from ..data.images import ImageSet
from ..data.weights import OFFLINE_ENV, WeightsUnavailable, fetch, fetch_command, hf_endpoint, network_available, offline
from ..presets import foundation_to_fetch
from ..pretrained import WEIGHTS_ENV, Pretrained
from .progress import Progress

MB = 1_000_000


def with_foundation(run_dir: Path, config: RunConfig, images: ImageSet, hardware: Hardware,
                    replan: Callable[[], RunConfig], show_bar: bool = True) -> RunConfig:
    """``config`` (planned by ``auto`` for ``images`` on ``hardware``), or, when the foundation
    backbone it would rather use was fetched now, ``replan()`` (the same plan made again, which now
    finds it), its note saying so. A refused or failed fetch keeps ``config``, its note saying what
    a stronger backbone would need; a fetch's progress is written into ``run_dir``."""
    spec = foundation_to_fetch(len(images), images.image_size[0], images.channels, config.time_budget, hardware)
    if spec is None:
        return config
    if offline():
        return _noted(config, f"offline ({OFFLINE_ENV}=1 or --offline): {_stronger(spec)}")
    if not network_available():
        return _noted(config, f"no network ({hf_endpoint()} did not answer): {_stronger(spec)}")
    progress = Progress(run_dir, show_bar=show_bar)
    progress.start("images")  # until the run begins, the app shows it starting its images stage
    part = f"fetching {spec.name}"
    try:
        path = fetch(spec.name, lambda done, total: progress.step(
            round(done / MB), max(1, round((total or (spec.download_mb or 1) * MB) / MB)), unit="MB", part=part))
    except WeightsUnavailable as error:
        return _noted(config, f"{error}")
    finally:
        progress.close_bar()
    fetched = replan()
    return replace(fetched, note=f"fetched {spec.name} ({spec.pretraining}, {path.stat().st_size / MB:.0f} MB) into "
                                 f"{path.parent}: no foundation backbone was on this machine, and its passes fit the "
                                 f"budget; " + fetched.note)


def _stronger(spec: Pretrained) -> str:
    return (f"{spec.name} ({spec.pretraining}, about {spec.download_mb} MB) would give stronger features; run "
            f"`{fetch_command(spec)}` when connected (on another machine: then copy the file it names to "
            f"${WEIGHTS_ENV}/{spec.weights_file} here)")


def _noted(config: RunConfig, text: str) -> RunConfig:
    return replace(config, note=f"{config.note}; {text}" if config.note else text)
