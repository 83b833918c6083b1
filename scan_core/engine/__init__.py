"""Running the method on a dataset: ``run`` drives the stages of a run directory (one module each in
``stages``), ``context`` and ``models`` are what they share, ``progress`` reports, ``device`` and
``cancel`` deal with the process, ``inference`` applies a finished run to new images."""
