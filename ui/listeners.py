"""The JavaScript the app's inline components (``st.components.v2``) share, written once.

Plotly's events (``plotly_click``, ``plotly_selected``, ``plotly_hover``) are not DOM events: a
listener goes on each chart with ``plot.on``, and a chart is drawn after the component that
listens to it mounts, and is drawn anew when its figure changes. :data:`EVERY_PLOT_JS` defines
``everyPlot(state, attach)``: call ``attach(plot)`` for every plotly chart on the page, now and
every 300 ms (``attach`` marks a chart it has done); it returns the cleanup. Clicks on
plain HTML (the galleries) need none of this: one listener on the document sees them all.
"""
from __future__ import annotations

import streamlit as st

EVERY_PLOT_JS = """
function everyPlot(state, attach) {
  const poll = () => document.querySelectorAll('.stPlotlyChart .js-plotly-plot').forEach((plot) => {
    if (typeof plot.on === 'function' && typeof plot.emit === 'function') attach(plot);
  });
  poll();
  clearInterval(state.timer);  // one poll per component, however often Streamlit calls it with new data
  state.timer = setInterval(poll, 300);
  return () => clearInterval(state.timer);
}
"""


def plot_component(name: str, js: str):
    """An inline component whose ``js`` (an ES module with a default export) may call ``everyPlot``."""
    return st.components.v2.component(name, js=EVERY_PLOT_JS + js)
