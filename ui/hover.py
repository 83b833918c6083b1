"""Thumbnails in the embedding map's hover: plotly hovers hold text only, so a small inline
component (``st.components.v2``) listens to the map's ``plotly_hover`` events and shows the hovered
image beside plotly's label, cut from one sprite sheet of every thumbnail sent with the page.

Where it stays fast: the sheet is made once per run (cached) and is only sent while it is small
(:data:`SPRITE_MAX_PIXELS`); bigger runs show the text hover alone and say so.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from scan_core.results import RunResults
from ui.gallery import data_uri

SPRITE_MAX_PIXELS = 3_000_000   # about 1 MB of PNG per page load at most
HOVER_PX = 96

_JS = """
export default function (component) {
  const { data } = component;
  window.__scanHover = data;
  const attach = () => {
    const plot = document.querySelector('.stPlotlyChart .js-plotly-plot');
    if (!plot || typeof plot.on !== 'function') { setTimeout(attach, 200); return; }
    if (plot.__scanHoverAttached) return;
    plot.__scanHoverAttached = true;
    let tip = document.getElementById('scan-hover-thumb');
    if (!tip) {
      tip = document.createElement('div');
      tip.id = 'scan-hover-thumb';
      tip.style.cssText = 'position:fixed;display:none;pointer-events:none;z-index:1000;border-radius:6px;'
        + 'box-shadow:0 2px 8px rgba(0,0,0,.35);background-repeat:no-repeat;image-rendering:auto;';
      document.body.appendChild(tip);
    }
    plot.on('plotly_hover', (event) => {
      const sheet = window.__scanHover;
      const point = event.points && event.points[0];
      if (!sheet || !sheet.sprite || !point || point.customdata == null) return;
      const index = Math.round(point.customdata[0]);
      const size = sheet.display, col = index % sheet.columns, row = Math.floor(index / sheet.columns);
      tip.dataset.index = String(index);
      tip.style.width = tip.style.height = size + 'px';
      tip.style.backgroundImage = 'url(' + sheet.sprite + ')';
      tip.style.backgroundSize = (sheet.columns * size) + 'px ' + (sheet.rows * size) + 'px';
      tip.style.backgroundPosition = (-col * size) + 'px ' + (-row * size) + 'px';
      tip.style.left = (event.event.clientX - size - 16) + 'px';
      tip.style.top = (event.event.clientY - size / 2) + 'px';
      tip.style.display = 'block';
    });
    plot.on('plotly_unhover', () => { tip.style.display = 'none'; });
  };
  attach();
}
"""

_component = st.components.v2.component("scan_hover_thumbnails", js=_JS)


def sprite_sheet(thumbnails: np.ndarray) -> tuple[str, int, int]:
    """All ``thumbnails`` ``(N, T, T, C)`` tiled row by row into one PNG; ``(data URI, columns, rows)``."""
    n, side = len(thumbnails), thumbnails.shape[1]
    columns = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    tiles = np.zeros((rows * columns, *thumbnails.shape[1:]), dtype=np.uint8)
    tiles[:n] = thumbnails
    sheet = tiles.reshape(rows, columns, side, side, -1).transpose(0, 2, 1, 3, 4).reshape(rows * side, columns * side, -1)
    return data_uri(sheet, None), columns, rows


@st.cache_resource(max_entries=4, show_spinner=False)
def _sheet(run_dir: str, images_mtime: int, _thumbnails: np.ndarray) -> dict:
    sprite, columns, rows = sprite_sheet(np.asarray(_thumbnails))
    return {"sprite": sprite, "columns": columns, "rows": rows, "display": HOVER_PX}


def hover_thumbnails(results: RunResults) -> bool:
    """Mount the hover listener for the page's map; False (nothing sent) when the run is too big."""
    thumbnails = results.thumbnails()
    if thumbnails.shape[0] * thumbnails.shape[1] * thumbnails.shape[2] > SPRITE_MAX_PIXELS:
        return False
    stamp = (results.dir / "images" / "imageset.json").stat().st_mtime_ns
    _component(key="hover_thumbnails", data=_sheet(str(results.dir), stamp, thumbnails))
    return True
