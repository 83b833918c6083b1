"""The images stage: the dataset read once (:mod:`scan_core.data.sources`) and cached in the run
as a memory-mapped :class:`~scan_core.data.images.ImageSet`, with a report of the skipped files."""
from __future__ import annotations

from ...data.artifacts import load_json, save_json
from ...data.images import ImageSet
from ...data.sources import load_source
from ..context import RunContext


def run(ctx: RunContext) -> None:
    images, ctx.source = ctx.source, None  # the saved, memory-mapped copy replaces it
    if images is None:
        images = load_source(ctx.config.dataset, image_size=ctx.config.image_size, progress=ctx.progress.step)
    images.save(ctx.dir / "images")
    ctx.images = ImageSet.load(ctx.dir / "images")
    save_json(ctx.dir / "report.json", {"dataset": ctx.config.dataset, "loaded": len(images),
                                        "skipped": len(images.skipped), "skipped_files": images.skipped})
    ctx.record("images", ctx.images.summary())


def load(ctx: RunContext) -> None:
    load_json(ctx.dir / "report.json")
    ctx.images = ImageSet.load(ctx.dir / "images")
