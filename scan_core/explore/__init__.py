"""Exploring a run, what the app imports: training ``jobs`` in the background, a run's ``results``,
``curation`` (the human edit log) and ``export``. Importing this layer loads neither torch nor any
training code (a test checks it)."""
