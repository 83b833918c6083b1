"""Every key the app keeps in ``st.session_state`` or ``st.query_params`` from more than one place,
defined once. A widget key that a single call uses stays beside its widget.
"""
from __future__ import annotations

# The URL (``st.query_params``): what a refresh or a bookmark keeps
RUN_PARAM = "run"        # the run on show (also kept in session state: a page switch drops the URL's)
WHO_PARAM = "who"        # the curator's name
IMAGE_PARAM = "image"    # the image Neighbours shows
TAB_PARAM = "tab"        # the Curate & export tab shown (its label)
EDIT_IMAGES_TAB = "Edit images"  # the tab that edits the map's selection, which the Embedding page links to

# The sidebar
RUN_PICKER = "run_picker"    # the run selectbox
UNKNOWN_RUN = "unknown_run"  # a run name from the URL that is no run of the workspace, said until a run is picked
WHO = "who"                  # the curator's name box
LISTED_RUNS = "listed_runs"  # the workspace's runs, listed once per script run (ui.runs.listed_runs)

# Data & training (``ui.new_run`` sets them when it starts a run, ``ui.progress`` reads them)
SCROLL_TO_PROGRESS = "scroll_to_progress"  # (run name, time): a run just started here, its card scrolled into view
NAME_USED = "name_used"                    # (run name, message) when a start's name was made safe

# What the user chose, kept across pages (``ui.selection``)
SELECTION = "selection"      # {"run", "ids"}: the images last selected on the map
PICKED = "picked_images"     # {"run", "ids"}: thumbnails picked (Ctrl- or Shift-click) in the galleries
KEPT = "kept_widgets"        # widget key -> the value it had when last drawn

# Curation (``ui.curating``): the version of the curated state the previous script run showed
SHOWN_VERSION = "shown_version"  # {"run", "version"}: what this script run shows
SEEN_VERSION = "seen_version"    # what the previous one showed: the state the user acted on
CLUSTER_TITLES = "cluster_titles_drawn"  # cluster box key -> {title: cluster} it has drawn (ui.curating.cluster_box)

# Galleries and the detail view (``ui.gallery``, ``ui.detail``)
DETAIL = "detail"                  # the open detail view (ui.detail.DetailRequest)
GALLERY_ORDERS = "gallery_orders"  # gallery name -> its image indices in order: next / previous in the detail view
THUMB_SIZE = "thumb_size"          # the thumbnail-size slider (Embedding), read by every gallery
DETAIL_SHOWN_VERSION = "detail_shown_version"  # the curation version the detail view last drew
