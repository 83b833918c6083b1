"""A new cluster from the images the user chose (the map's selection, a gallery's picks, the image
in the detail view, a cluster's picked members): a cluster the model did not find, named at once
when a name is typed (a name another cluster has is refused with a message), learnt by the next
refine (:meth:`scan_core.explore.curation.Curation.new_cluster`)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st

from scan_core.explore.results import RunResults
from ui.curating import curation, edit, who
from ui.text import markdown_text


def new_cluster_form(results: RunResults, images, key: str, seen: int | None, button: str,
                     after: Callable[[int], object] | None = None) -> None:
    """A form with an optional name and the button ``button`` that makes ``images`` ``(M,)`` a new
    cluster in one edit (refused when another session moved them after version ``seen``);
    ``after(new cluster id)`` runs after a successful edit."""
    images = np.asarray(images, dtype=np.int64)
    with st.form(key, border=False):
        left, right = st.columns([3, 2], vertical_alignment="bottom")
        name = left.text_input("Name of the new cluster", max_chars=100, placeholder="optional, e.g. people",
                               key=f"{key}_name")
        if right.form_submit_button(button, icon=":material/add_circle:", disabled=not len(images)):
            count = f"{len(images):,} image{'s' if len(images) != 1 else ''}"
            named = f" ({markdown_text(name.strip())})" if name.strip() else ""
            edit(lambda: curation(results).new_cluster(images, who(), seen=seen, name=name.strip() or None),
                 lambda new: f"{count} made the new cluster {new}{named}", after=after)
