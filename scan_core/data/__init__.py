"""Data: atomic artifacts (``artifacts``), the :class:`~scan_core.data.images.ImageSet` every source
becomes (``images``), the sources (``sources``: built-ins, folders, zips), what a run directory
holds (``rundir``: the stage table, ``status.json``, ``events.jsonl``) and its ``metrics.json``
(``run_metrics``), and the pretrained backbones' weights fetched into their caches (``weights``).
Nothing here imports torch until a torch file is read or written."""
