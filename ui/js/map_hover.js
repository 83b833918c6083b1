// The embedding map's hover thumbnail (ui/map_events.py's hover_thumbnails): the hovered image in a
// tooltip beside plotly's label, cut from a sprite sheet. component.data: {run, display (tile side in
// px), on_demand (sheets come on request), sheet ({sprite, columns, rows, count, ids} or null)}. Sends
// 'wanted', the hovered image's index, when its sheet has not come. Runs after every_plot.js and
// image_index.js.
/* global everyPlot, imageIndex */

const hover = window.__scanHover || (window.__scanHover = { run: null, tiles: new Map() });

function tooltip() {
  let tip = document.getElementById('scan-hover-thumb');
  if (!tip) {
    tip = document.createElement('div');
    tip.id = 'scan-hover-thumb';
    tip.style.cssText = 'position:fixed;display:none;pointer-events:none;z-index:1000;border-radius:6px;'
      + 'box-shadow:0 2px 8px rgba(0,0,0,.35);background:#eee no-repeat;image-rendering:auto;';
    document.body.appendChild(tip);
  }
  return tip;
}

function draw() {  // the hovered image, if its sheet has come; else an empty frame while it comes
  const tip = tooltip(), at = hover.at, size = hover.display;
  if (!at) { tip.style.display = 'none'; return; }
  const tile = hover.tiles.get(at.index);
  tip.dataset.index = tile ? String(at.index) : '';
  tip.style.width = tip.style.height = size + 'px';
  tip.style.backgroundImage = tile ? 'url(' + tile.sheet.sprite + ')' : 'none';
  if (tile) {
    tip.style.backgroundSize = (tile.sheet.columns * size) + 'px ' + (tile.sheet.rows * size) + 'px';
    tip.style.backgroundPosition = (-tile.column * size) + 'px ' + (-tile.row * size) + 'px';
  }
  tip.style.left = (at.x - size - 16) + 'px';
  tip.style.top = (at.y - size / 2) + 'px';
  tip.style.display = 'block';
}

function keep(sheet) {  // every image of a sheet -> its tile
  const count = sheet.ids ? sheet.ids.length : sheet.count;
  for (let k = 0; k < count; k++) {
    const index = sheet.ids ? sheet.ids[k] : k;
    hover.tiles.set(index, { sheet, column: k % sheet.columns, row: Math.floor(k / sheet.columns) });
  }
}

function ask() {  // one request at a time (or after 2 s unanswered); the answer asks again if need be
  const at = hover.at;
  if (!at || hover.tiles.has(at.index) || !hover.onDemand) return;
  if (hover.asked && Date.now() - hover.asked.time < 2000) return;
  hover.asked = { index: at.index, time: Date.now() };
  hover.send('wanted', at.index);
}

function attach(plot) {
  if (plot.__scanHover) return;
  plot.__scanHover = true;
  plot.on('plotly_hover', (event) => {
    const index = imageIndex(event.points && event.points[0]);
    if (index == null) return;
    hover.at = { index, x: event.event.clientX, y: event.event.clientY };
    draw();
    ask();
  });
  plot.on('plotly_unhover', () => { hover.at = null; draw(); });
}

export default function (component) {
  const { data } = component;
  if (hover.run !== data.run) {
    hover.run = data.run;
    hover.tiles = new Map();
    hover.asked = null;
  }
  hover.send = component.setTriggerValue;
  hover.display = data.display;
  hover.onDemand = data.on_demand;
  if (data.sheet) {
    keep(data.sheet);
    if (hover.asked && hover.tiles.has(hover.asked.index)) hover.asked = null;
  }
  draw();
  ask();
  clearInterval(hover.watch);  // also when Streamlit drops the map without calling the cleanup below
  hover.watch = setInterval(() => {
    if (!document.querySelector('.stPlotlyChart .js-plotly-plot')) tooltip().style.display = 'none';
  }, 300);
  const stop = everyPlot(hover, attach);
  return () => {  // the map went away (another page) or is about to get new data: no image left behind
    stop();
    tooltip().style.display = 'none';
  };
}
