"""SCAN Explorer's library: unsupervised image classification with SCAN (Van Gansbeke et al.,
ECCV 2020, "Learning to Classify Images without Labels"), and what the app needs to explore it.

Layers, each importing only those above it in this list:

- :mod:`scan_core.config`, :mod:`scan_core.presets`, :mod:`scan_core.costs`, :mod:`scan_core.pretrained` -
  settings as plain data (no torch), each stage's rough cost (ETA, progress, time budget), and the
  registry of pretrained backbones with where their weights are.
- :mod:`scan_core.data` - artifacts on disk, the :class:`ImageSet`, image sources, a run
  directory's stage table and status.
- :mod:`scan_core.method` - the method on arrays and configs, one module per stage (see its
  package docstring).
- :mod:`scan_core.engine` - running it: a run directory's stages in order, resumable
  (``engine.run``, one module per stage in ``engine.stages``), progress, inference on new images.
- :mod:`scan_core.explore` - exploring it (what the app imports; no torch, no training code):
  background jobs and their time estimates, a run's results, curation, the review queue, K
  suggestions, refine requests, run comparisons, exports.
- :mod:`scan_core.cli` - ``python -m scan_core train|evaluate|suggest|review|refine``.
"""
__version__ = "0.1.0"
