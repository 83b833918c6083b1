"""What users typed (cluster names, labels, file names and ids) shown as text: never as Markdown,
never as HTML. A name like ``[x](http://evil.example)`` or ``<b>`` reads as those characters.

Streamlit renders Markdown in headers, captions, toasts and ``st.markdown``, and plotly renders a
few HTML tags in legends, axes and hover labels; so names go through :func:`html_text` into
``st.html`` (escaped) or into plotly (which reads the escaped entities back as characters).
"""
from __future__ import annotations

import html

import streamlit as st

HEADING_STYLE = "margin:0.4rem 0 0.6rem 0;font-weight:600;line-height:1.3;overflow-wrap:anywhere"
SIZES = {2: "1.75rem", 3: "1.4rem"}


def html_text(value) -> str:
    """``value`` as HTML-escaped text (``<`` ``>`` ``&`` and quotes become entities)."""
    return html.escape(str(value), quote=True)


def heading(text: str, level: int = 3) -> None:
    """A heading whose text is shown literally."""
    st.html(f'<h{level} style="{HEADING_STYLE};font-size:{SIZES.get(level, "1.2rem")}">{html_text(text)}'
            f"</h{level}>")


def text_lines(lines: list[str], first_bold: bool = True) -> None:
    """A small card of lines shown literally (the first in bold)."""
    cells = [f"<b>{html_text(line)}</b>" if first_bold and i == 0 else html_text(line) for i, line in enumerate(lines)]
    st.html('<div style="line-height:1.5;overflow-wrap:anywhere">' + "<br>".join(cells) + "</div>")


MARKDOWN_SPECIALS = frozenset("\\`*_{}[]()#+-.!|<>~:$=&")


def markdown_text(value) -> str:
    """``value`` for a Markdown context (``st.error``, ``st.caption``...): every character Markdown
    or Streamlit's directives (``:red[...]``, ``:material/...:``) read is backslash-escaped."""
    return "".join(f"\\{c}" if c in MARKDOWN_SPECIALS else c for c in str(value))


def duration_text(seconds: float) -> str:
    """``seconds`` rounded for a person: "40 s", "3 min", "1.5 h"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
