"""The app's inline components (``st.components.v2``), their JavaScript read from ``ui/js/*.js``.

Each component runs one ES module: the files :func:`script` joins, shared functions first and the
component's own file (whose default export Streamlit calls) last. No value is written into the
JavaScript: what the Python side passes goes as the ``data`` argument of each call, a JSON object the
script reads as ``component.data`` (each file's header says what it reads there), and what the browser
sends comes back through ``component.setTriggerValue``.

The shared files: ``every_plot.js`` defines ``everyPlot(state, attach)``, which calls ``attach(plot)``
for every plotly chart on the page, now and every 300 ms (plotly's events are not DOM events: a
listener goes on each chart, and a chart is drawn after its listener mounts), and returns the cleanup;
``image_index.js`` defines ``imageIndex(point)``, a map point's image index. Clicks on plain HTML (the
galleries) need none of this: one listener on the document sees them all.
"""
from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st

JS_DIR = Path(__file__).parent / "js"


@functools.cache
def _source(name: str) -> str:
    path = JS_DIR / f"{name}.js"
    if not path.is_file():
        raise ValueError(f"no script {name!r}: {path} does not exist")
    return path.read_text(encoding="utf-8")


def script(*names: str) -> str:
    """The files ``ui/js/<name>.js`` of ``names``, in order, joined into one ES module (each file read once)."""
    if not names:
        raise ValueError("script needs at least one file name")
    return "\n".join(_source(name) for name in names)


def component(name: str, *scripts: str):
    """An inline component named ``name`` running :func:`script` ``(*scripts)``; the last file has the
    default export."""
    return st.components.v2.component(name, js=script(*scripts))


def plot_component(name: str, *scripts: str):
    """A :func:`component` whose scripts may call ``everyPlot`` (``every_plot.js`` goes first)."""
    return component(name, "every_plot", *scripts)
