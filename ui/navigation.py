"""The app's pages, declared once (``app.py`` builds ``st.navigation`` from :data:`PAGES`), and the
workaround that runs a page inside ``app.py`` when Streamlit started it alone."""
from __future__ import annotations

import runpy
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

APP = Path(__file__).resolve().parent.parent / "app.py"
NAVIGATED: ContextVar[bool] = ContextVar("scan_explorer_navigated", default=False)


@dataclass(frozen=True)
class PageSpec:
    """One page: its script, title and icon, and the sidebar section it is listed under."""
    path: str
    title: str
    icon: str
    section: str


PAGES = (
    PageSpec("pages/data_training.py", "Data & training", ":material/model_training:", "Train"),
    PageSpec("pages/embedding.py", "Embedding", ":material/scatter_plot:", "Explore"),
    PageSpec("pages/clusters.py", "Clusters", ":material/category:", "Explore"),
    PageSpec("pages/neighbours.py", "Neighbours", ":material/hub:", "Explore"),
    PageSpec("pages/evaluation.py", "Evaluation", ":material/analytics:", "Explore"),
    PageSpec("pages/review.py", "Review", ":material/rule:", "Curate"),
    PageSpec("pages/curate_export.py", "Curate & export", ":material/edit_note:", "Curate"),
)
HOME = PAGES[0]


def page_spec(title: str) -> PageSpec:
    """The page titled ``title``."""
    for spec in PAGES:
        if spec.title == title:
            return spec
    raise ValueError(f"no page titled {title!r}; the pages are {[spec.title for spec in PAGES]}")


def navigation():
    """``st.navigation`` over :data:`PAGES`, by section, Data & training first (the default)."""
    sections: dict[str, list] = {}
    for spec in PAGES:
        sections.setdefault(spec.section, []).append(
            st.Page(spec.path, title=spec.title, icon=spec.icon, default=spec is HOME))
    return st.navigation(sections)


def page_link(title: str, label: str | None = None, container=st, **kwargs) -> None:
    """A link to the page titled ``title`` (with its icon; ``label`` instead of its title if given)."""
    spec = page_spec(title)
    container.page_link(spec.path, label=label or spec.title, icon=spec.icon, **kwargs)


def through_navigation() -> None:
    """Run ``app.py`` (layout, sidebar, ``st.navigation``) around a page that Streamlit started alone.

    Streamlit treats a folder named ``pages/`` beside the entry script as its legacy multipage
    mode until a script run calls ``st.navigation``: the first request of a fresh server that names
    a page (a bookmarked URL), and every run under ``AppTest``, which resets that mode, runs the
    page without ``app.py``. Streamlit offers no setting to turn the legacy mode off, and the
    product's layout names the folder ``pages/``, so a page checks whether ``app.py`` is around it
    (:data:`NAVIGATED`, set by :func:`navigated_run`) and otherwise runs ``app.py`` in the same
    script run (so a clicked button still counts), which calls ``st.navigation`` (ending the legacy
    mode) and runs this page again inside it; the outer run then stops.
    """
    if not NAVIGATED.get():
        runpy.run_path(str(APP), run_name="__main__")
        st.stop()


@contextmanager
def navigated_run() -> Iterator[None]:
    """``app.py`` runs the chosen page inside this block, so that the page knows it is in the app."""
    token = NAVIGATED.set(True)
    try:
        yield
    finally:
        NAVIGATED.reset(token)
