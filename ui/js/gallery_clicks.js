// The galleries' clicks (ui/detail.py): a plain click on a thumbnail sends 'opened', {index, gallery};
// Ctrl/Cmd or Shift clicks pick thumbnails, sent together as 'picked', {ops: [[index, on], ...]}.
// component.data: none.

const bridge = window.__scanGalleryClicks || (window.__scanGalleryClicks = {});
bridge.ops = bridge.ops || [];
const PICKS_WAIT_MS = 700;  // picks are sent together, this long after the last one: one rerun for many

function sendPicks() {
  clearTimeout(bridge.timer);
  if (!bridge.ops.length || !bridge.send) return;
  bridge.send('picked', {ops: bridge.ops});
  bridge.ops = [];
}

function pick(figure, on) {  // outlined at once; the page's rerun draws the same
  figure.classList.toggle('scan-picked', on);
  bridge.ops.push([Number(figure.dataset.index), on]);
}

// one listener on the document, not one per thumbnail: galleries are redrawn on every rerun, and a
// click on a thumbnail drawn a moment ago counts as well
bridge.onClick = bridge.onClick || ((event) => {
  const figure = event.target.closest && event.target.closest('.scan-gallery figure[data-index]');
  if (!figure || !bridge.send) return;
  const gallery = figure.dataset.gallery;
  if (!(event.ctrlKey || event.metaKey || event.shiftKey)) {
    sendPicks();
    bridge.send('opened', {index: Number(figure.dataset.index), gallery});
    return;
  }
  event.preventDefault();
  const figures = Array.from(document.querySelectorAll('.scan-gallery figure[data-index]'))
    .filter((other) => other.dataset.gallery === gallery);
  const anchor = bridge.anchor && bridge.anchor.gallery === gallery
    ? figures.findIndex((other) => other.dataset.index === bridge.anchor.index) : -1;
  if (event.shiftKey && anchor >= 0) {  // Shift: the range from the last pick, all picked
    const at = figures.indexOf(figure);
    figures.slice(Math.min(anchor, at), Math.max(anchor, at) + 1).forEach((other) => pick(other, true));
  } else {  // Ctrl (or a first Shift): this one picked or unpicked
    pick(figure, !figure.classList.contains('scan-picked'));
  }
  bridge.anchor = {gallery, index: figure.dataset.index};
  clearTimeout(bridge.timer);
  bridge.timer = setTimeout(sendPicks, PICKS_WAIT_MS);
});

export default function (component) {
  bridge.send = component.setTriggerValue;
  if (!bridge.mounted) document.addEventListener('click', bridge.onClick);
  bridge.mounted = (bridge.mounted || 0) + 1;
  return () => {  // the last mounted listener gone (another page): no click is sent any more
    bridge.mounted -= 1;
    if (!bridge.mounted) document.removeEventListener('click', bridge.onClick);
  };
}
