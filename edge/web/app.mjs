// The on-device page: a fused int8 CAM-ready model in onnxruntime-web (WebGPU when the browser has
// it, else WebAssembly), relu and abs Grad-CAM drawn over a chosen or dropped photo.
import * as ort from "./ort/ort.all.min.mjs";
import { mapToRgba, preprocessPixels, topClasses } from "./cam.mjs";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

const WEIGHTINGS = ["relu", "abs"];
const $ = (id) => document.getElementById(id);

async function createSession(modelUrl) {
  const providers = navigator.gpu ? [["webgpu", "wasm"], ["wasm"]] : [["wasm"]];
  let lastError;
  for (const executionProviders of providers) {
    try {
      const session = await ort.InferenceSession.create(modelUrl, { executionProviders });
      return { session, backend: executionProviders[0] };
    } catch (error) {
      lastError = error; // WebGPU may lack an int8 kernel: fall back to WebAssembly.
    }
  }
  throw lastError;
}

async function load() {
  const started = performance.now();
  const info = await (await fetch("model/model.json")).json();
  const { session, backend } = await createSession("model/model.onnx");
  return { info, session, backend, loadMs: performance.now() - started };
}

const state = { model: null };
const ready = load().then((model) => {
  state.model = model;
  $("status").textContent =
    `Model loaded in ${model.loadMs.toFixed(0)} ms (${model.backend}${model.backend === "wasm" ? `, ${ort.env.wasm.numThreads} thread(s)` : ""}).`;
  document.body.dataset.ready = "true";
  return model;
});

/** Run the model on a preprocessed (1, 3, H, W) tensor: top-3 classes and the fused maps. */
async function explainTensor(data, dims) {
  const { info, session } = await ready;
  const feeds = {
    [info.input]: new ort.Tensor("float32", Float32Array.from(data), dims),
    [info.class_index]: new ort.Tensor("int64", BigInt64Array.from([BigInt(info.top1_class)]), [1]),
  };
  const started = performance.now();
  const outputs = await session.run(feeds);
  const runMs = performance.now() - started;
  const logits = outputs[info.logits].data;
  const maps = {};
  for (const weighting of WEIGHTINGS) maps[weighting] = Array.from(outputs[info.heatmaps[weighting]].data);
  return { top: topClasses(logits, 3, info.class_labels), maps, runMs };
}

function drawOverlay(canvas, image, map, size) {
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const small = new OffscreenCanvas(size[1], size[0]);
  small.getContext("2d").putImageData(new ImageData(mapToRgba(map, size[1], size[0]), size[1], size[0]), 0, 0);
  context.globalAlpha = 0.5;
  context.imageSmoothingQuality = "high";
  context.drawImage(small, 0, 0, canvas.width, canvas.height); // the map at the photo's own size
  context.globalAlpha = 1;
}

/** Explain a decoded photo: preprocess on a canvas, run, draw relu and abs at the photo's size. */
async function explainImage(image) {
  const { info } = await ready;
  const [height, width] = info.input_size;
  let started = performance.now();
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(image, 0, 0, width, height);
  const pixels = context.getImageData(0, 0, width, height).data;
  const tensor = preprocessPixels(pixels, width, height, info);
  const preprocessMs = performance.now() - started;
  const result = await explainTensor(tensor, [1, 3, height, width]);
  started = performance.now();
  for (const weighting of WEIGHTINGS) drawOverlay($(`map-${weighting}`), image, result.maps[weighting], info.input_size);
  const drawMs = performance.now() - started;
  $("labels").innerHTML = result.top
    .map((c) => `<li>${c.label} <span class="p">${(100 * c.probability).toFixed(1)}%</span></li>`)
    .join("");
  $("timings").textContent =
    `preprocess ${preprocessMs.toFixed(1)} ms · model (forward + gradients + both maps) ${result.runMs.toFixed(1)} ms · draw ${drawMs.toFixed(1)} ms`;
  $("result").hidden = false;
  return { ...result, preprocessMs, drawMs, width: image.naturalWidth, height: image.naturalHeight };
}

async function explainFile(file) {
  const image = new Image();
  image.src = URL.createObjectURL(file);
  await image.decode();
  $("photo-name").textContent = file.name;
  const result = await explainImage(image);
  document.body.dataset.explained = file.name;
  return result;
}

$("file").addEventListener("change", (event) => {
  if (event.target.files.length) explainFile(event.target.files[0]);
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) explainFile(event.dataTransfer.files[0]);
});
ready.catch((error) => {
  $("status").textContent = `Could not load the model: ${error}`;
  document.body.dataset.ready = "error";
});

window.onnxcam = { ready, explainTensor, explainImage, explainFile };
