// everyPlot(state, attach): call attach(plot) for every plotly chart on the page, now and every
// 300 ms (attach marks a chart it has done); returns the cleanup. Plotly's events (plotly_click,
// plotly_selected, plotly_hover) are not DOM events: a listener goes on each chart with plot.on,
// and a chart is drawn after the component that listens to it mounts, and anew when its figure
// changes. Joined before a component's own script by ui/listeners.py's plot_component.
function everyPlot(state, attach) {
  const poll = () => document.querySelectorAll('.stPlotlyChart .js-plotly-plot').forEach((plot) => {
    if (typeof plot.on === 'function' && typeof plot.emit === 'function') attach(plot);
  });
  poll();
  clearInterval(state.timer);  // one poll per component, however often Streamlit calls it with new data
  state.timer = setInterval(poll, 300);
  return () => clearInterval(state.timer);
}
