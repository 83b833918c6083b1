// The embedding map's selection listener (ui/map_events.py's map_events): sends 'selected', the image
// indices of a box, lasso or click ([] when cleared); 'region', the box or lasso drawn on a map drawn
// at a level of detail, with the hidden legend groups; 'view', the ranges shown after a zoom ([] after
// a zoom out). component.data: none. Runs after every_plot.js and image_index.js.
/* global everyPlot, imageIndex */

const bridge = window.__scanSelection || (window.__scanSelection = {});

function attach(plot) {
  if (plot.__scanSelection) return;
  plot.__scanSelection = true;
  plot.on('plotly_deselect', () => bridge.send('selected', []));
  plot.on('plotly_relayout', (event) => {  // a zoom or pan: the ranges shown now; a zoom out: none
    if (!event) return;
    if (event['xaxis.autorange'] || event['yaxis.autorange']) { bridge.send('view', []); return; }
    if (!Object.keys(event).some((key) => key.startsWith('xaxis.range') || key.startsWith('yaxis.range'))) return;
    const x = plot.layout.xaxis.range, y = plot.layout.yaxis.range;
    if (x && y) bridge.send('view', [x[0], x[1], y[0], y[1]].map(Number));
  });
  plot.on('plotly_click', (event) => {  // a click selects the image under the pointer alone
    const index = imageIndex(event && event.points && event.points[0]);
    if (index != null) bridge.send('selected', [index]);
  });
  // Plotly hands a selection to every listener through gd.emit, Streamlit's included: send the
  // image indices here, and pass the others the selection without its points, so that Streamlit's
  // widget sends nothing and starts no rerun of its own.
  // A map drawn at a level of detail (layout.meta.regions) sends the region drawn instead, with
  // the legend groups hidden: the server selects every image in it, drawn or not.
  const emit = plot.emit;
  plot.emit = function (name, event) {
    if (name === 'plotly_selected' && event && event.points) {
      const regions = plot.layout.meta && plot.layout.meta.regions;
      const region = event.lassoPoints ? { kind: 'lasso', xs: event.lassoPoints.x, ys: event.lassoPoints.y }
        : event.range ? { kind: 'box', xs: event.range.x, ys: event.range.y } : null;
      if (regions && region) {
        const hidden = plot._fullData.filter((trace) => trace.visible === 'legendonly').map((trace) => trace.name);
        bridge.send('region', { ...region, hidden });
      } else {
        bridge.send('selected', event.points.map(imageIndex).filter((index) => index != null));
      }
      event = { ...event, points: [], selections: [] };
    }
    return emit.call(this, name, event);
  };
}

export default function (component) {
  bridge.send = component.setTriggerValue;
  return everyPlot(bridge, attach);
}
