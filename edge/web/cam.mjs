// Pure functions of the on-device page: preprocessing, class scores and map colours.
// No DOM access here, so that the test can compare each step with the Python runtime.

/** RGBA pixels (Uint8ClampedArray, width*height*4) already at the model's input size ->
 *  Float32Array (1, 3, H, W) as the model's metadata says: x = (pixel / 255 - mean) / std. */
export function preprocessPixels(rgba, width, height, prep) {
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  const order = prep.channel_order === "BGR" ? [2, 1, 0] : [0, 1, 2];
  for (let c = 0; c < 3; c++) {
    const source = order[c];
    const mean = prep.mean[c];
    const std = prep.std[c];
    for (let i = 0; i < plane; i++) {
      out[c * plane + i] = (rgba[4 * i + source] / 255 - mean) / std;
    }
  }
  return out;
}

/** The k most probable classes of one row of logits: [{index, label, probability}]. */
export function topClasses(logits, k, labels) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const exp = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  return exp
    .map((e, index) => ({ index, probability: e / sum }))
    .sort((a, b) => b.probability - a.probability || a.index - b.index)
    .slice(0, k)
    .map((entry) => ({ ...entry, label: labels ? labels[entry.index] : `class ${entry.index}` }));
}

/** 'jet' colours of a value in [0, 1], as onnxcam.runtime.image_io.jet_colormap. */
export function jet(value) {
  const v = Math.min(1, Math.max(0, value));
  return [0.75, 0.5, 0.25].map((centre) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 4 * centre)))));
}

/** A (H, W) map in [0, 1] as opaque jet-coloured RGBA pixels. */
export function mapToRgba(map, width, height) {
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const [r, g, b] = jet(map[i]);
    rgba.set([r, g, b, 255], 4 * i);
  }
  return rgba;
}
