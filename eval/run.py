"""A resumable localization evaluation of one CAM-ready model on one image set (``onnxcam eval``).

For every image the model is run once for its prediction and the classes' channel weights, then,
for every method of the runtime (:data:`onnxcam.runtime.methods.METHODS`),
:meth:`onnxcam.runtime.CamSession.explain_weightings` maps the ground-truth class (for ImageNet
photos: the best-scoring of the classes that name the object) under every weighting from one set
of model passes. Per image and variant the run keeps:

- the WSOL protocol's box curves (:func:`onnxcam.eval.scoring.image_iou_curves` on the raw
  layer-resolution map: bicubic to 224 x 224, min-max, the contour rule, boxes scaled to 224),
  packed as one ``uint8`` per threshold: bits 0-1 count the IoU thresholds 0.3/0.5/0.7 that the best
  of all contour boxes reaches (they are nested), bit 2 says the largest contour's box reaches 0.5;
- the fixed-threshold boxes of the CAM / Grad-CAM papers (largest blob of the map at the image's own
  size, at 0.15 and 0.20 of its maximum) and their best IoU with the class's ground-truth boxes;
- with masks, the per-image PxAP pixel histograms;
- the raw map itself (small: the layer's resolution), for overlays.

Work is cut into chunks of images; each (method, chunk) result is written atomically as one
``.npz`` file under ``runs/<dataset>/<model>/``, so an interrupted run resumes where it stopped.
Each (method, chunk) is explained and scored (contours at every threshold) in a worker process, one
per core, each with a single-threaded ONNX Runtime session of its own: the cores never wait on one
another, whether a method's time goes to model passes (Score-CAM, occlusion) or to scoring (a
method's progress bar counts the chunks handed out); a map that another weighting gave for the
same image is scored once. A method whose
measured cost would exceed ``method_budget_s`` is run on a prefix of the images only (recorded in
``run.json``, reported with its ``n``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from onnxcam.atomic_write import write_atomically, write_text_atomically
from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS, TOP1_CLASS
from onnxcam.eval.boxes import box_from_heatmap, box_iou
from onnxcam.eval.datasets.synthetic import SYNTHETIC_TEST_SEED
from onnxcam.eval.localization import CAM_THRESHOLD, GRAD_CAM_THRESHOLD
from onnxcam.eval.scoring import image_iou_curves
from onnxcam.eval.wsol import V2_IOU_THRESHOLDS, WSOL_SIZE, pixel_histograms, scoremap_thresholds, wsol_scoremap

EVAL_WEIGHTINGS = ("relu", "abs", "abs-weights")
FIXED_THRESHOLDS = (GRAD_CAM_THRESHOLD, CAM_THRESHOLD)
REPORT_STEP = 0.01
"""Threshold step of the report's sweep (the WSOL code's own runs use 0.001: ``--step 0.001``)."""
LARGEST_BIT = 4


@dataclass
class EvalSet:
    """Images with ground truth, in one pixel frame per image.

    ``images[i]``: RGB uint8 ``(H_i, W_i, 3)``; ``boxes[i]``: ``(M_i, 4)`` inclusive boxes;
    ``box_classes[i][m]``: the class indices that name box ``m`` (one for the synthetic set, several
    ImageNet synonyms for photos); ``masks[i]``: boolean ``(H_i, W_i)`` foreground, or ``None`` for
    the whole set when there are none; ``spec``: how to rebuild the set (stored in ``run.json``).
    """

    name: str
    ids: list[str]
    images: Sequence[np.ndarray]
    boxes: list[np.ndarray]
    box_classes: list[list[tuple[int, ...]]]
    masks: Sequence[np.ndarray] | None = None
    spec: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def accepted(self, i: int) -> tuple[int, ...]:
        """Every class that names an object of image ``i``."""
        return tuple(sorted({c for classes in self.box_classes[i] for c in classes}))

    def class_boxes(self, i: int, class_index: int) -> np.ndarray:
        """The ``(M, 4)`` boxes of image ``i`` named by ``class_index`` (all boxes if none is)."""
        keep = [class_index in classes for classes in self.box_classes[i]]
        return self.boxes[i][keep] if any(keep) else self.boxes[i]


def synthetic_eval_set(n: int, image_size: int, num_classes: int, seed: int = SYNTHETIC_TEST_SEED) -> EvalSet:
    """The synthetic held-out split (:func:`~onnxcam.eval.datasets.make_synthetic_dataset`)."""
    from onnxcam.eval.datasets.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(n, seed, image_size, num_classes)
    return EvalSet(
        name="synthetic",
        ids=data.image_ids,
        images=data.images,
        boxes=list(data.boxes),
        box_classes=[[(int(label),)] * len(boxes) for label, boxes in zip(data.labels, data.boxes)],
        masks=data.masks > 0,
        spec={"dataset": "synthetic", "n": n, "seed": seed, "image_size": image_size, "num_classes": num_classes},
    )


def demo_photos_eval_set() -> EvalSet:
    """The five scikit-image photos with hand-labelled boxes (``onnxcam demo``'s set, ImageNet classes)."""
    from onnxcam.eval.datasets.demo_photos import demo_photos, skimage_data_dir
    from onnxcam.runtime.image_io import read_rgb_image

    records = demo_photos()["images"]
    folder = skimage_data_dir()
    return EvalSet(
        name="demo-photos",
        ids=[record["file"] for record in records],
        images=[read_rgb_image(folder / record["file"]) for record in records],
        boxes=[np.array([obj["box"] for obj in record["objects"]], dtype=np.int64) for record in records],
        box_classes=[[tuple(obj["imagenet_classes"]) for obj in record["objects"]] for record in records],
        spec={"dataset": "demo-photos", "n": len(records)},
    )


@dataclass(frozen=True)
class RunConfig:
    """The options that fix a run's numbers; a resumed run must use the same ones."""

    model: str
    layer: str
    dataset: dict[str, object]
    methods: tuple[str, ...]
    weightings: tuple[str, ...]
    step: float
    chunk_size: int
    model_sha256: str

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model, "layer": self.layer, "dataset": self.dataset, "methods": list(self.methods),
            "weightings": list(self.weightings), "step": self.step, "chunk_size": self.chunk_size,
            "model_sha256": self.model_sha256,
        }


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, hex: a run resumes only on the very model it started with."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack_levels(largest: np.ndarray, every: np.ndarray) -> np.ndarray:
    """Per-threshold IoU curves ``(N, T)`` -> ``uint8`` ``(N, T)`` codes (see the module docstring).

    ``code & 3`` is the number of IoU thresholds in :data:`V2_IOU_THRESHOLDS` reached by ``every``;
    ``code & 4`` is set where ``largest >= 0.5``.
    """
    levels = sum((np.asarray(every) >= delta).astype(np.uint8) for delta in V2_IOU_THRESHOLDS)
    return (levels + LARGEST_BIT * (np.asarray(largest) >= 0.5)).astype(np.uint8)


def unpack_hits(codes: np.ndarray, metric: str) -> np.ndarray:
    """Boolean ``(N, T)`` hits of a box metric from :func:`pack_levels` codes.

    ``metric``: ``"MaxBoxAcc"`` (largest box, IoU 0.5) or ``"MaxBoxAccV2_IoU30"`` / ``_IoU50`` /
    ``_IoU70`` (every box at that IoU).
    """
    if metric == "MaxBoxAcc":
        return (codes & LARGEST_BIT) != 0
    rank = {f"MaxBoxAccV2_IoU{round(d * 100)}": k + 1 for k, d in enumerate(V2_IOU_THRESHOLDS)}
    if metric not in rank:
        raise ValueError(f"unknown box metric {metric!r}; valid: MaxBoxAcc, {', '.join(rank)}")
    return (codes & 3) >= rank[metric]


@dataclass(frozen=True)
class ChunkTruth:
    """What scoring one chunk needs besides the maps (picklable, for the worker processes)."""

    gt_boxes: list[np.ndarray]
    sizes: list[tuple[int, int]]
    masks: list[np.ndarray] | None

    def rows(self, images: Sequence[int]) -> ChunkTruth:
        """The truth of ``images`` (indices into the chunk, repeats allowed), in that order."""
        return ChunkTruth(
            gt_boxes=[self.gt_boxes[i] for i in images],
            sizes=[self.sizes[i] for i in images],
            masks=None if self.masks is None else [self.masks[i] for i in images],
        )


def score_variant(raw: np.ndarray, maps: Sequence[np.ndarray], truth: ChunkTruth, step: float) -> dict[str, np.ndarray]:
    """Score maps, one per image of ``truth``: raw maps ``(n, h, w)``, maps at image size.

    Every array returned has one row per map, computed from that map and its image's truth alone.
    """
    thresholds = scoremap_thresholds(step)
    largest, every, true_hists, false_hists = [], [], [], []
    for i, raw_map in enumerate(raw):
        scoremap = wsol_scoremap(raw_map)
        curves = image_iou_curves(scoremap, truth.gt_boxes[i], truth.sizes[i], "wsol", thresholds)
        largest.append(curves.largest)
        every.append(curves.every)
        if truth.masks is not None:
            mask = truth.masks[i].astype(np.uint8)
            mask224 = cv2.resize(mask, (WSOL_SIZE, WSOL_SIZE), interpolation=cv2.INTER_NEAREST) > 0
            t, f = pixel_histograms(scoremap, mask224, thresholds)
            true_hists.append(t)
            false_hists.append(f)
    scored: dict[str, np.ndarray] = {"levels": pack_levels(largest, every), "raw": raw.astype(np.float32)}
    for tau in FIXED_THRESHOLDS:
        boxes = np.stack([box_from_heatmap(m, tau) for m in maps])
        scored[f"box_{tau:.2f}"] = boxes
        scored[f"iou_{tau:.2f}"] = np.array([box_iou(b, g).max() for b, g in zip(boxes, truth.gt_boxes)])
    if truth.masks is not None:
        scored["px_true"] = np.array(true_hists, dtype=np.int32)
        scored["px_false"] = np.array(false_hists, dtype=np.int32)
    return scored


def distinct_maps(variants: dict[str, tuple[np.ndarray, Sequence[np.ndarray]]]) -> tuple[list[tuple[str, int]], dict[str, np.ndarray]]:
    """The maps of a chunk worth scoring: each image's maps that differ from one another.

    ``variants``: per weighting, raw maps ``(n, h, w)`` and the maps at image size. Returns the
    ``(weighting, image)`` of each distinct map, and per weighting the ``(n,)`` positions in that
    list of its images' maps (equal raw maps and equal maps of the same image share a position:
    Grad-CAM++'s ``relu`` and ``abs`` maps, say, whenever the signed map is nowhere negative).
    """
    first: dict[tuple[int, bytes, bytes], int] = {}
    distinct: list[tuple[str, int]] = []
    positions = {}
    for weighting, (raw, maps) in variants.items():
        picks = []
        for image in range(len(raw)):
            key = (image, raw[image].tobytes(), np.asarray(maps[image]).tobytes())
            if key not in first:
                first[key] = len(distinct)
                distinct.append((weighting, image))
            picks.append(first[key])
        positions[weighting] = np.array(picks, dtype=np.int64)
    return distinct, positions


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an ``.npz`` atomically, uncompressed: the raw maps of the input-gradient
    methods are noise to zlib (9.8 instead of 11.1 MB a chunk) and cost it half a second."""

    def save(temporary: str) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    return write_atomically(path, save)


def score_chunk(
    path: Path, start: int, variants: dict[str, tuple[np.ndarray, list[np.ndarray]]], truth: ChunkTruth, step: float
) -> Path:
    """Score every weighting of one (method, chunk) and write ``path``.

    Maps that another weighting already gave for the same image are scored once (:func:`distinct_maps`).
    """
    distinct, positions = distinct_maps(variants)
    raw = np.stack([variants[weighting][0][image] for weighting, image in distinct])
    maps = [variants[weighting][1][image] for weighting, image in distinct]
    scored = score_variant(raw, maps, truth.rows([image for _, image in distinct]), step)
    arrays: dict[str, np.ndarray] = {"start": np.array(start)}
    for weighting, picks in positions.items():
        for key, value in scored.items():
            arrays[f"{weighting}__{key}"] = value[picks]
    return save_npz(path, arrays)


@dataclass(frozen=True)
class ChunkTask:
    """Explaining and scoring one (method, chunk): everything a worker process needs (picklable)."""

    model_path: str
    method: str
    weightings: tuple[str, ...]
    layer: str
    images: list[np.ndarray]
    labels: np.ndarray
    truth: ChunkTruth
    path: Path
    start: int
    step: float


_sessions: dict[tuple[str, int | None], object] = {}
"""The CamSession of each model a process explains with, made on its first chunk."""


def chunk_session(model_path: str, threads: int | None = None):
    """This process's CamSession of ``model_path``, made once: ``threads`` intra-op threads (default:
    one per core) that sleep between runs instead of spinning (other processes need the cores),
    and ``prune_graph`` (each method computes only the outputs it reads)."""
    from onnxcam.runtime import CamSession
    from onnxcam.runtime.session_options import default_session_options, without_spinning

    key = (model_path, threads)
    if key not in _sessions:
        options = without_spinning(default_session_options(threads))
        _sessions[key] = CamSession(model_path, session_options=options, prune_graph=True)
    return _sessions[key]


def explain_chunk(task: ChunkTask, threads: int | None = None) -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    """Every weighting of the task's method on its images, from one set of model passes."""
    results = chunk_session(task.model_path, threads).explain_weightings(
        task.images, task.method, task.weightings, class_index=task.labels, layer=task.layer
    )
    return {weighting: (result.raw_maps, list(result.maps)) for weighting, result in results.items()}


def run_chunk(task: ChunkTask, threads: int | None = None) -> float:
    """Explain and score one chunk, write its file; returns the seconds it took per image."""
    began = time.perf_counter()
    score_chunk(task.path, task.start, explain_chunk(task, threads), task.truth, task.step)
    return (time.perf_counter() - began) / len(task.images)


def _submit(executor: ProcessPoolExecutor | None, task: ChunkTask) -> Future:
    """:func:`run_chunk` in a worker, or here and now (a finished future) without workers."""
    if executor is not None:
        return executor.submit(run_chunk, task, 1)  # one process per core: one intra-op thread each
    future: Future = Future()
    future.set_result(run_chunk(task))
    return future


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one worker per core; OpenCV's own threads would oversubscribe


def channel_weight_methods(methods: Sequence[str]) -> dict[str, object]:
    """Instances of the ``methods`` whose maps are ``sum_k w_k A^k`` with weights from one pass."""
    from onnxcam.runtime.methods import CamMethod, get_method

    found = {}
    for name in methods:
        method = get_method(name)
        if type(method).channel_weights is not CamMethod.channel_weights:
            found[name] = method
    return found


def negative_weight_fractions(session, batch: np.ndarray, labels: np.ndarray, layer: str, methods: dict) -> dict[str, np.ndarray]:
    """Per image, the fraction of channel weights ``alpha_k`` below zero, per method ``(n,)``."""
    from onnxcam.runtime.methods import LayerOutputs

    info = session.metadata.layer(layer)
    names = [info.activations, info.gradients] + ([info.cam_weights] if info.has_cam_weights else [])
    fetched = dict(zip(names, session.run(names, {INPUT: batch, CLASS_INDEX: labels})))
    outputs = LayerOutputs(fetched[info.activations], fetched[info.gradients], fetched.get(info.cam_weights))
    fractions = {}
    for name, method in methods.items():
        if method.needs_cam_weights and outputs.cam_weights is None:
            continue
        try:
            weights = np.asarray(method.channel_weights(outputs))
        except (NotImplementedError, TypeError, ValueError, AttributeError):
            continue  # a method whose weights need more than one pass's outputs
        fractions[name] = (weights < 0).mean(axis=1)
    return fractions


class EvaluationRun:
    """One model on one :class:`EvalSet`, resumable, written under ``out/runs/<set>/<model>/``.

    The model runs with ``prune_graph``: each method computes only the outputs it reads, so one
    file exported with input gradients serves the layer methods at their own cost and saliency,
    guided backpropagation, deconvnet and Guided Grad-CAM at the cost of their one rule.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        data: EvalSet,
        out: str | os.PathLike,
        *,
        layer: str | None = None,
        methods: Sequence[str] | None = None,
        weightings: Sequence[str] = EVAL_WEIGHTINGS,
        step: float = REPORT_STEP,
        chunk_size: int = 100,
        method_budget_s: float | None = None,
        workers: int | None = None,
        progress: bool = True,
        name: str | None = None,
    ):
        from onnxcam.runtime import METHODS

        self.session = chunk_session(str(model_path))
        self.data = data
        self.model_name = name or self.session.metadata.arch or Path(model_path).stem.split(".")[0]
        self.layer = layer or self.session.layers[0]
        if self.layer not in self.session.layers:
            raise ValueError(f"layer {self.layer!r} is not exported; exported layers: {', '.join(self.session.layers)}")
        self.config = RunConfig(
            model=self.model_name,
            layer=self.layer,
            dataset=dict(data.spec) or {"dataset": data.name, "n": len(data)},
            methods=tuple(methods or METHODS),
            weightings=tuple(weightings),
            step=float(step),
            chunk_size=int(chunk_size),
            model_sha256=file_sha256(model_path),
        )
        self.folder = Path(out) / "runs" / data.name / self.model_name
        self.method_budget_s = method_budget_s
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.progress = progress
        self.state = self._load_state()

    # ---- state (run.json) --------------------------------------------------------------------

    def _load_state(self) -> dict:
        path = self.folder / "run.json"
        if path.is_file():
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("config") != json.loads(json.dumps(self.config.to_json())):
                raise ValueError(
                    f"{self.folder} holds a run with other options ({state.get('config')}); rerun with "
                    "the same options to resume, or delete the folder to start over"
                )
            return state
        return {"config": self.config.to_json(), "model_path": str(self.session.path), "methods": {}}

    def _save_state(self) -> None:
        write_text_atomically(self.folder / "run.json", json.dumps(self.state, indent=1) + "\n")

    def chunk_path(self, part: str, start: int) -> Path:
        return self.folder / "chunks" / part / f"{start:06d}.npz"

    def starts(self, n: int | None = None) -> range:
        return range(0, len(self.data) if n is None else n, self.config.chunk_size)

    # ---- the work ------------------------------------------------------------------------------

    def run(self) -> Path:
        """Compute every missing chunk; returns the run folder."""
        self._save_state()
        labels = self._model_pass()
        executor = None
        if self.workers > 0:
            executor = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_worker_init)
        pending: list[Future] = []  # scoring in flight, carried from one method to the next
        try:
            for method in self.config.methods:
                self._method_pass(method, labels, executor, pending)
            for future in pending:
                future.result()
        finally:
            if executor is not None:
                executor.shutdown(wait=True)
        self.state["complete"] = True
        self._save_state()
        return self.folder

    def _images(self, start: int) -> list[np.ndarray]:
        return [np.asarray(image) for image in self.data.images[start : start + self.config.chunk_size]]

    def _model_pass(self) -> np.ndarray:
        """Predictions, explained classes and channel-weight signs, per chunk; returns the labels."""
        from tqdm import tqdm

        weight_methods = channel_weight_methods(self.config.methods)
        labels = []
        for start in tqdm(self.starts(), desc=f"{self.model_name}: predictions", disable=not self.progress):
            path = self.chunk_path("model", start)
            if not path.is_file():
                batch, _ = self.session.prepare(self._images(start))
                top1 = np.full(len(batch), TOP1_CLASS, dtype=np.int64)
                logits = self.session.run([LOGITS], {INPUT: batch, CLASS_INDEX: top1})[0]
                indices = range(start, start + len(batch))
                accepted = [np.array(self.data.accepted(i)) for i in indices]
                explained = np.array([a[np.argmax(row[a])] for a, row in zip(accepted, logits)], dtype=np.int64)
                arrays = {
                    "start": np.array(start),
                    "predicted": logits.argmax(axis=1).astype(np.int64),
                    "explained": explained,
                    "correct": np.array([p in a for p, a in zip(logits.argmax(axis=1), accepted)]),
                }
                for method, fraction in negative_weight_fractions(
                    self.session, batch, explained, self.layer, weight_methods
                ).items():
                    arrays[f"negative_weights__{method}"] = fraction
                save_npz(path, arrays)
            with np.load(path) as chunk:
                labels.append(chunk["explained"])
        return np.concatenate(labels)

    def _truth(self, start: int, labels: np.ndarray) -> ChunkTruth:
        indices = range(start, min(start + self.config.chunk_size, len(self.data)))
        masks = None if self.data.masks is None else [np.asarray(self.data.masks[i]) for i in indices]
        return ChunkTruth(
            gt_boxes=[self.data.class_boxes(i, int(labels[i])) for i in indices],
            sizes=[(int(self.data.images[i].shape[1]), int(self.data.images[i].shape[0])) for i in indices],
            masks=masks,
        )

    def weightings_of(self, method: str) -> list[str]:
        """The run's weightings that ``method`` accepts (Eigen-CAM, e.g., has no ``abs-weights``)."""
        from onnxcam.runtime.methods import METHODS

        return [w for w in self.config.weightings if w in METHODS[method].weightings]

    def _task(self, method: str, start: int, labels: np.ndarray) -> ChunkTask:
        images = self._images(start)
        return ChunkTask(
            model_path=str(self.session.path), method=method, weightings=tuple(self.weightings_of(method)),
            layer=self.layer, images=images, labels=labels[start : start + len(images)],
            truth=self._truth(start, labels), path=self.chunk_path(method, start), start=start, step=self.config.step,
        )

    def _method_pass(
        self, method: str, labels: np.ndarray, executor: ProcessPoolExecutor | None, pending: list[Future]
    ) -> None:
        """Hand every missing chunk of ``method`` to the workers; ``pending`` holds the chunks in
        flight (at most two per worker), finished ones are taken out."""
        from tqdm import tqdm

        status = self.state["methods"].get(method)
        if status is not None and status.get("skipped"):
            return
        if not self.weightings_of(method):
            self.state["methods"][method] = {"skipped": True, "reason": "accepts none of the weightings", "n": 0}
            self._save_state()
            return
        if status is None:
            task = self._task(method, 0, labels)
            try:  # one image here, so that a method the model cannot do is known before any work
                explain_chunk(replace(task, images=task.images[:1], labels=task.labels[:1]))
            except ValueError as exc:  # e.g. CAM without a GAP + linear head
                self.state["methods"][method] = {"skipped": True, "reason": str(exc), "n": 0}
                self._save_state()
                return
        n = len(self.data) if status is None else int(status["n"])
        # While the method's share of the images is unknown: its first chunk in flight.
        sizing: Future | None = None
        bar = tqdm(total=len(self.starts(n)), desc=f"{self.model_name}: {method}", disable=not self.progress)
        for start in self.starts(len(self.data)):
            if sizing is not None and sizing.done():
                status, sizing = self._decide_images(method, sizing.result()), None
                n = int(status["n"])
                bar.total = len(self.starts(n))
            if start >= n:
                break
            if self.chunk_path(method, start).is_file():
                bar.update()
                continue
            future = _submit(executor, self._task(method, start, labels))
            if status is None and sizing is None:
                sizing = future
            pending.append(future)
            bar.update()
            while len(pending) >= 2 * max(self.workers, 1):
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for finished in done:
                    finished.result()
                pending[:] = [f for f in pending if f not in done]
        if sizing is not None:  # sized after its last chunk was handed out
            self._decide_images(method, sizing.result())
        bar.close()

    def _decide_images(self, method: str, worker_seconds_per_image: float) -> dict[str, object]:
        """How many images ``method`` gets, from the cost of its first chunk in one worker
        (explaining with every weighting and scoring), shared among the workers: all, or the prefix
        the budget allows. Chunks handed out before the decision and past the prefix are left out
        of the report."""
        seconds_per_image = worker_seconds_per_image / max(self.workers, 1)
        n = len(self.data)
        if self.method_budget_s is not None and seconds_per_image * n > self.method_budget_s:
            chunks = max(1, int(self.method_budget_s / (seconds_per_image * self.config.chunk_size)))
            n = min(n, chunks * self.config.chunk_size)
        status = {"skipped": False, "n": n, "seconds_per_image": round(seconds_per_image, 5)}
        self.state["methods"][method] = status
        self._save_state()
        return status
