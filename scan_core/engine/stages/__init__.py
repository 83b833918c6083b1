"""One module per stage of a run, named after it in :data:`scan_core.data.rundir.STAGES`; each has
``run(ctx)``, which computes the stage, writes its artifacts and records its metrics, and
``load(ctx)``, which reads them back into the :class:`~scan_core.engine.context.RunContext` when
the stage is already done (CorruptArtifact, FileNotFoundError, ValueError... when they are not intact)."""
