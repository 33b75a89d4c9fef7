// Runs a CAM-ready ONNX model with onnxruntime-node or onnxruntime-web (wasm backend, under Node)
// on inputs written by onnxcam's Python tests, and writes the outputs back for comparison.
//
//   node edge/run_model.mjs --runtime node|web --model model.onnx --io DIR
//
// DIR/request.json: {"inputs": [{"name", "dtype", "shape", "file"}], "outputs": ["heatmap/gradcam/relu", ...]}
//   each input file holds the raw little-endian values ("float32" or "int64"), C order.
// Writes DIR/response-<runtime>.json: {"runtime", "version", "load_ms", "run_ms",
//   "outputs": [{"name", "dtype", "shape", "file"}]} and the raw output files it names.
// Output names contain "/", so files are numbered, never named after the tensor.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

const TYPED_ARRAYS = { float32: Float32Array, int64: BigInt64Array };

async function loadRuntime(runtime) {
  if (runtime === "node") {
    const ort = await import("onnxruntime-node");
    return { ort, options: { executionProviders: ["cpu"], graphOptimizationLevel: "all" } };
  }
  if (runtime === "web") {
    const ort = await import("onnxruntime-web");
    // One thread: the wasm threaded build would start Node worker threads; the maps do not depend
    // on it and a single thread keeps the run reproducible on a 2-core machine.
    ort.env.wasm.numThreads = 1;
    return { ort, options: { executionProviders: ["wasm"], graphOptimizationLevel: "all" } };
  }
  throw new Error(`--runtime must be 'node' or 'web', got '${runtime}'`);
}

function readTensor(ort, dir, spec) {
  const TypedArray = TYPED_ARRAYS[spec.dtype];
  if (!TypedArray) throw new Error(`input ${spec.name}: unsupported dtype ${spec.dtype}`);
  const bytes = readFileSync(join(dir, spec.file));
  // Copy into a fresh, aligned buffer: a Buffer's byteOffset need not be a multiple of 8.
  const values = new TypedArray(bytes.byteLength / TypedArray.BYTES_PER_ELEMENT);
  new Uint8Array(values.buffer).set(bytes);
  return new ort.Tensor(spec.dtype, values, spec.shape);
}

async function main() {
  const { values: args } = parseArgs({
    options: { runtime: { type: "string" }, model: { type: "string" }, io: { type: "string" } },
  });
  if (!args.runtime || !args.model || !args.io) {
    throw new Error("usage: node run_model.mjs --runtime node|web --model model.onnx --io DIR");
  }
  const { ort, options } = await loadRuntime(args.runtime);
  const request = JSON.parse(readFileSync(join(args.io, "request.json"), "utf8"));
  const feeds = Object.fromEntries(request.inputs.map((spec) => [spec.name, readTensor(ort, args.io, spec)]));

  let start = performance.now();
  // Bytes rather than a path: onnxruntime-web under Node takes a buffer on every version.
  const session = await ort.InferenceSession.create(readFileSync(args.model), options);
  const loadMs = performance.now() - start;
  start = performance.now();
  const results = await session.run(feeds, request.outputs);
  const runMs = performance.now() - start;

  const outputs = request.outputs.map((name, i) => {
    const tensor = results[name];
    const file = `${args.runtime}-output-${i}.bin`;
    const data = tensor.data;
    writeFileSync(join(args.io, file), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return { name, dtype: tensor.type, shape: tensor.dims, file };
  });
  const response = {
    runtime: args.runtime,
    version: ort.env.versions?.common ?? null,
    load_ms: loadMs,
    run_ms: runMs,
    outputs,
  };
  writeFileSync(join(args.io, `response-${args.runtime}.json`), JSON.stringify(response, null, 1));
  await session.release?.();
}

main().catch((error) => {
  console.error(error?.stack ?? String(error));
  process.exit(1);
});
