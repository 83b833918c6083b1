// imageIndex(point): the image index of a point of the embedding map (drawn with customdata[0] =
// image index, ui/map_figure.py), or null for a point without one.
function imageIndex(point) {
  const custom = point && point.customdata;
  if (custom == null) return null;
  return Math.round(Array.isArray(custom) || ArrayBuffer.isView(custom) ? custom[0] : custom);
}
