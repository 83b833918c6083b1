"""Exploring a run, what the app imports: the ``workspace`` (its folders, run names, the folders the
UI may read), training ``jobs`` in the background and their time ``estimates``, a run's ``results``,
``curation`` (the human edit log), the ``review`` queue, a run's K ``suggest``-ion, a ``refine``
request, two runs side by side (``compare``) and ``export``. Importing this layer loads neither torch
nor any training code (a test checks it)."""
