"""Paged image galleries: one HTML grid per page of thumbnails inlined as PNG data URIs (one
element, no widget and no extra request per image; encoded at their stored size and scaled by the
browser, 5x smaller and 10x faster to make than at display size). A click on a thumbnail opens the
image's detail view (:mod:`ui.detail`) through a small listener component, and a Ctrl- or Shift-click
picks it (outlined) for an edit of several images at once; an "open" picker sends an image to the
Neighbours page."""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable

import numpy as np
import streamlit as st
from PIL import Image

from scan_core.explore.results import RunResults
from ui.keys import GALLERY_ORDERS, IMAGE_PARAM, RUN_PARAM, THUMB_SIZE
from ui.navigation import page_spec
from ui.selection import picked

PAGE_SIZE = 100
PICKED_CLASS = ' class="scan-picked"'
DISPLAY_PX = 88
GALLERY_CSS = """<style>
.scan-gallery {display: flex; flex-wrap: wrap; gap: 6px;}
.scan-gallery figure {margin: 0; width: var(--scan-thumb, 88px); text-align: center; cursor: pointer;}
.scan-gallery img {width: var(--scan-thumb, 88px); height: var(--scan-thumb, 88px); border-radius: 4px;
  display: block; object-fit: contain;}
.scan-gallery figure:hover img {outline: 2px solid #FF4B4B;}
.scan-gallery figure.scan-picked img {outline: 3px solid #1C83E1; outline-offset: 1px;}
.scan-gallery figcaption span {display: block; font-size: 11px; line-height: 1.2; color: #555;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;}
.scan-gallery figcaption span.scan-true {color: #1f6f43;}
</style>"""


def display_image(pixels: np.ndarray, size: int | None = DISPLAY_PX) -> Image.Image:
    """A thumbnail ``(T, T, C)`` uint8 as a PIL image scaled to ``size`` pixels (None: as stored)."""
    array = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    image = Image.fromarray(np.ascontiguousarray(array))
    return image.resize((size, size), Image.Resampling.BICUBIC) if size and image.width != size else image


def gallery(results: RunResults, indices: np.ndarray, key: str, caption: Callable[[int], str],
            page_size: int = PAGE_SIZE, empty: str = "No images here.") -> np.ndarray:
    """Draw ``indices`` as a paged grid; return the indices shown on the current page. Each image's
    caption is ``caption(i)`` (one line per ``\n``), then its true label when the run has labels;
    hovering an image shows the whole caption."""
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        st.caption(empty)
        return indices
    pages = (len(indices) + page_size - 1) // page_size
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    page = int(left.number_input("Page", 1, pages, 1, key=f"{key}_page")) if pages > 1 else 1
    shown = indices[(page - 1) * page_size: page * page_size]
    right.caption(f"{len(indices):,} images · page {page} of {pages}")
    thumbs = results.thumbnails()
    true = results.true_label_names()
    chosen = set(picked(results))
    size = int(st.session_state.get(THUMB_SIZE, DISPLAY_PX))

    def cell(i: int) -> str:
        lines = caption(i).split("\n")
        spans = "".join(f"<span>{html.escape(line)}</span>" for line in lines)
        if true is not None:
            spans += f'<span class="scan-true">true: {html.escape(str(true[i]))}</span>'
            lines.append(f"true: {true[i]}")
        title = html.escape(f"#{i} · {' · '.join(lines)} · click to open, Ctrl- or Shift-click to pick")
        return (f'<figure data-index="{i}" data-gallery="{html.escape(key)}"{PICKED_CLASS if i in chosen else ""}>'
                f'<img src="{data_uri(thumbs[i], None)}" alt="#{i}" title="{title}"><figcaption>{spans}</figcaption></figure>')

    cells = "".join(cell(int(i)) for i in shown)
    st.html(f'<div class="scan-gallery" style="--scan-thumb:{size}px">{cells}</div>{GALLERY_CSS}')
    st.session_state.setdefault(GALLERY_ORDERS, {})[key] = indices.tolist()  # next / previous in the detail view
    return shown


def open_in_neighbours(results: RunResults, shown: np.ndarray, key: str) -> None:
    """A picker over the images on screen that opens one on the Neighbours page."""
    if len(shown) == 0:
        return
    ids = results.images.ids
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    picked = left.selectbox("Open an image of this page", shown.tolist(), format_func=lambda i: f"{ids[i]} (#{i})",
                            key=f"{key}_open")
    if right.button("Show neighbours", key=f"{key}_go", icon=":material/hub:"):
        st.switch_page(page_spec("Neighbours").path, query_params={RUN_PARAM: results.dir.name, IMAGE_PARAM: str(int(picked))})


def data_uri(pixels: np.ndarray, size: int | None = 48) -> str:
    """A thumbnail as a ``data:image/png`` URI, ``size`` pixels wide (None: as stored)."""
    buffer = io.BytesIO()
    display_image(pixels, size).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
