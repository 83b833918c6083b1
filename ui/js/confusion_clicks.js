// The confusion matrix's cell clicks (pages/evaluation.py): sends 'clicked', {row, column} of the
// heatmap cell clicked. component.data: none. Runs after every_plot.js.
/* global everyPlot */

const cells = window.__scanCells || (window.__scanCells = {});

function attach(plot) {  // a click on a heatmap cell sends its [row, column]
  if (plot.__scanCell || !plot.data || plot.data[0].type !== 'heatmap') return;
  plot.__scanCell = true;
  plot.on('plotly_click', (event) => {
    const cell = event && event.points && event.points[0] && event.points[0].pointNumber;
    if (Array.isArray(cell)) cells.send('clicked', {row: cell[0], column: cell[1]});
  });
}

export default function (component) {
  cells.send = component.setTriggerValue;
  return everyPlot(cells, attach);
}
