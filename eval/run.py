"""A resumable localization evaluation of one CAM-ready model on one image set (``onnxcam eval``).

For every image the model is run once for its prediction and the classes' channel weights, then,
for every method of the runtime (:data:`onnxcam.runtime.methods.METHODS`),
:meth:`onnxcam.runtime.CamSession.explain_weightings` maps the ground-truth class (for ImageNet
photos: the best-scoring of the classes that name the object) under every weighting from one set
of model passes; :mod:`onnxcam.eval.chunks` says what is kept per image, and
:mod:`onnxcam.eval.chunk_metrics` the threshold-free localization and faithfulness metrics the
workers add (``metrics``); the sanity checks run once per model (:mod:`onnxcam.eval.sanity_step`).

Work is cut into chunks of images; each (method, chunk) result is written atomically as one
``.npz`` file under ``runs/<dataset>/<model>/``, next to ``run.json`` (the run's options and each
method's status), so an interrupted run resumes where it stopped. The (method, chunk) tasks run on
an :class:`~onnxcam.eval.engine.Engine` (by default worker processes on this machine, one per core;
a method's progress bar counts the chunks handed out). A method whose measured cost would exceed
``method_budget_s`` is run on a prefix of the images only (recorded in ``run.json``, reported with
its ``n``); each group of metrics that costs extra forward passes (faithfulness, road) is computed
on the prefix of those images that ``metrics_budget_s`` pays for (``faithfulness_n``, ``road_n``).

A run's metric groups are not among the options that must match to resume: a chunk file that lacks
a group asked for now is computed again, and chunk files from before the groups existed load as
they are (box metrics only).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from onnxcam.atomic_write import write_text_atomically
from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS, TOP1_CLASS
from onnxcam.eval.chunk_metrics import CHUNK_GROUPS, GROUP_KEYS, PASS_GROUPS, check_groups, seconds_key
from onnxcam.eval.chunks import ChunkTruth, save_npz
from onnxcam.eval.engine import ChunkTask, Engine, LocalEngine, chunk_session, explain_chunk
from onnxcam.eval.evalset import EvalSet, UnreadableImageError
from onnxcam.eval.weight_signs import channel_weight_methods, negative_weight_fractions

EVAL_WEIGHTINGS = ("relu", "abs", "abs-weights")
REPORT_STEP = 0.01
"""Threshold step of the report's sweep (the WSOL code's own runs use 0.001: ``--step 0.001``)."""


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
    skip_missing: bool = False

    def to_json(self) -> dict[str, object]:
        document = {
            "model": self.model, "layer": self.layer, "dataset": self.dataset, "methods": list(self.methods),
            "weightings": list(self.weightings), "step": self.step, "chunk_size": self.chunk_size,
            "model_sha256": self.model_sha256,
        }
        if self.skip_missing:  # only when set: runs from before the option resume as they are
            document["skip_missing"] = True
        return document


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, hex: a run resumes only on the very model it started with."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        engine: Engine | None = None,
        skip_missing: bool = False,
        progress: bool = True,
        name: str | None = None,
        metrics: Sequence[str] = (),
        metrics_budget_s: float | None = None,
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
            skip_missing=skip_missing,
        )
        self.folder = Path(out) / "runs" / data.name / self.model_name
        self.method_budget_s = method_budget_s
        self.metrics_budget_s = method_budget_s if metrics_budget_s is None else metrics_budget_s
        self.engine = engine
        self.workers = engine.workers if engine is not None else (os.cpu_count() or 1) if workers is None else workers
        self.progress = progress
        self.metrics = check_groups(metrics)
        self.state = self._load_state()
        self.state["metrics"] = list(self.metrics)
        self._leave_out_unreadable()

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

    def _leave_out_unreadable(self) -> None:
        """Check every image file before any work (headers only): one that is missing or unreadable
        stops the run, naming it, or with ``skip_missing`` is left out of the set and listed in
        ``run.json`` (``skipped_images``). A resumed run must find the very same ones."""
        unreadable = self.data.unreadable()
        if unreadable and not self.config.skip_missing:
            listed = "; ".join(list(unreadable.values())[:5])
            raise UnreadableImageError(
                f"{len(unreadable)} of the {len(self.data)} images of {self.data.name!r} are missing or "
                f"unreadable: {listed}{' ...' if len(unreadable) > 5 else ''}; fix them, or leave them out "
                "with --skip-missing (skip_missing=True)"
            )
        if not self.config.skip_missing:
            return
        skipped = [{"id": self.data.ids[i], "reason": reason} for i, reason in sorted(unreadable.items())]
        if self.state.get("skipped_images", skipped) != skipped:
            raise ValueError(
                f"{self.folder} was computed without {len(self.state['skipped_images'])} unreadable images; "
                f"{len(skipped)} are unreadable now: the results would no longer line up; restore the "
                "files, or delete the folder to start over"
            )
        self.state["skipped_images"] = skipped
        self.data = self.data.without(sorted(unreadable))

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
        engine = self.engine or LocalEngine(self.workers)
        pending: list[object] = []  # tasks in flight, carried from one method to the next
        try:
            for method in self.config.methods:
                self._method_pass(method, labels, engine, pending)
            for handle in pending:
                engine.result(handle)
        finally:
            if self.engine is None:  # a given engine stays its owner's
                engine.close()
        if "sanity" in self.metrics:
            self._sanity_pass(labels)
        self.state["complete"] = True
        self._save_state()
        return self.folder

    def _images(self, start: int) -> list[np.ndarray]:
        return [self.data.images[i] for i in self._indices(start)]

    def _indices(self, start: int) -> range:
        return range(start, min(start + self.config.chunk_size, len(self.data)))

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
        indices = self._indices(start)
        return ChunkTruth(
            gt_boxes=[self.data.class_boxes(i, int(labels[i])) for i in indices],
            sizes=[self.data.size(i) for i in indices],
            masks=None if self.data.masks is None else self.data.masks.subset(indices),
        )

    def weightings_of(self, method: str) -> list[str]:
        """The run's weightings that ``method`` accepts (Eigen-CAM, e.g., has no ``abs-weights``)."""
        from onnxcam.runtime.methods import METHODS

        return [w for w in self.config.weightings if w in METHODS[method].weightings]

    def _task(self, method: str, start: int, labels: np.ndarray) -> ChunkTask:
        indices = self._indices(start)
        return ChunkTask(
            model_path=str(self.session.path), method=method, weightings=tuple(self.weightings_of(method)),
            layer=self.layer, images=self.data.images.subset(indices), labels=labels[start : start + len(indices)],
            truth=self._truth(start, labels), path=self.chunk_path(method, start), start=start, step=self.config.step,
            metrics=self._chunk_groups(method, start),
        )

    def _chunk_groups(self, method: str, start: int) -> tuple[str, ...]:
        """The metric groups chunk ``start`` of ``method`` computes: a pass-hungry group only on
        its prefix, ``<group>_n`` (every chunk while the method is being sized)."""
        status = self.state["methods"].get(method) or {}
        n = status.get("n", len(self.data))
        return tuple(
            g for g in CHUNK_GROUPS if g in self.metrics and (g not in PASS_GROUPS or start < int(status.get(f"{g}_n", n)))
        )

    def _chunk_done(self, method: str, start: int) -> bool:
        """Whether chunk ``start`` of ``method`` has its file, holding every metric group it should."""
        path = self.chunk_path(method, start)
        if not path.is_file():
            return False
        groups = self._chunk_groups(method, start)
        if not groups:
            return True
        with np.load(path) as chunk:  # reads the archive's directory only
            keys = set(chunk.files)
        weighting = self.weightings_of(method)[0]
        return all(f"{weighting}__{GROUP_KEYS[group][0]}" in keys for group in groups)

    def _method_pass(
        self, method: str, labels: np.ndarray, engine: Engine, pending: list[object]
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
                explain_chunk(replace(task, images=task.images.subset([0]), labels=task.labels[:1]))
            except ValueError as exc:  # e.g. CAM without a GAP + linear head
                self.state["methods"][method] = {"skipped": True, "reason": str(exc), "n": 0}
                self._save_state()
                return
        n = len(self.data) if status is None else int(status["n"])
        # While the method's share of the images is unknown: its first chunk in flight (waited
        # for at once when faithfulness or road is asked for).
        sizing: object | None = None
        sizing_start = 0
        bar = tqdm(total=len(self.starts(n)), desc=f"{self.model_name}: {method}", disable=not self.progress)
        for start in self.starts(len(self.data)):
            if sizing is not None and engine.wait([sizing], timeout=0):
                status, sizing = self._decide_images(method, engine.result(sizing), sizing_start), None
                n = int(status["n"])
                bar.total = len(self.starts(n))
            if start >= n:
                break
            if self._chunk_done(method, start):
                bar.update()
                continue
            handle = engine.submit(self._task(method, start, labels))
            pending.append(handle)
            bar.update()
            if status is None and sizing is None:
                sizing, sizing_start = handle, start
                if any(group in self.metrics for group in PASS_GROUPS):
                    # Which chunks get the costly metrics depends on the decision: wait for it.
                    status, sizing = self._decide_images(method, engine.result(handle), start), None
                    n = int(status["n"])
                    bar.total = len(self.starts(n))
            while len(pending) >= 2 * max(self.workers, 1):
                done = engine.wait(pending)
                for finished in done:
                    engine.result(finished)
                pending[:] = [h for h in pending if h not in done]
        if sizing is not None:  # sized after its last chunk was handed out
            self._decide_images(method, engine.result(sizing), sizing_start)
        bar.close()

    def _decide_images(self, method: str, worker_seconds_per_image: float, start: int) -> dict[str, object]:
        """How many images ``method`` gets, from the cost of its first chunk (``start``) in one
        worker (explaining with every weighting and scoring), shared among the workers: all, or the
        prefix the budget allows; then how many of those get the faithfulness metrics, whose own
        cost the chunk file records, from what the budget leaves. Chunks handed out before the
        decision and past a prefix are left out of the report."""
        workers = max(self.workers, 1)
        with np.load(self.chunk_path(method, start)) as chunk:
            costs = {g: float(chunk[seconds_key(g)]) / workers for g in PASS_GROUPS if seconds_key(g) in chunk.files}
        seconds_per_image = worker_seconds_per_image / workers
        rest = max(seconds_per_image - sum(costs.values()), 1e-9)
        n = len(self.data) if self.method_budget_s is None else self._prefix(len(self.data), rest, self.method_budget_s)
        status = {"skipped": False, "n": n, "seconds_per_image": round(rest, 5)}
        for group, cost in costs.items():
            status[f"{group}_n"] = n if self.metrics_budget_s is None else self._prefix(n, cost, self.metrics_budget_s)
            status[f"{group}_seconds_per_image"] = round(cost, 5)
        self.state["methods"][method] = status
        self._save_state()
        return status

    def _prefix(self, n: int, seconds_per_image: float, budget_s: float) -> int:
        """The images, of the first ``n``, that ``budget_s`` seconds pay for, in whole chunks (one at least)."""
        if seconds_per_image * n <= budget_s:
            return n
        chunks = max(1, int(budget_s / (seconds_per_image * self.config.chunk_size)))
        return min(n, chunks * self.config.chunk_size)

    # ---- sanity checks, once per model ------------------------------------------------------------

    def _sanity_pass(self, labels: np.ndarray) -> Path | None:
        """Randomize the model into ``sanity/`` and write ``sanity/sanity.npz`` (once: a rerun keeps it).

        Each method that ran gets :data:`~onnxcam.eval.sanity_step.SANITY_IMAGES` images, fewer
        (two at least) where its measured cost per image times the maps to make would pass the
        metrics budget.
        """
        from onnxcam.eval.sanity import randomizable_layers, randomize_layers
        from onnxcam.eval.sanity_step import SANITY_IMAGES, sanity_arrays, sanity_weightings, spaced_steps

        path = self.folder / "sanity" / "sanity.npz"
        if path.is_file():
            return path
        import onnx

        count = len(randomizable_layers(onnx.load(str(self.session.path))))
        steps = spaced_steps(count)
        methods, samples = {}, {}
        size = min(SANITY_IMAGES, len(self.data))
        for method in self.config.methods:
            status = self.state["methods"].get(method, {})
            if status.get("skipped", True):
                continue
            methods[method] = sanity_weightings(method, self.weightings_of(method))
            cost = float(status.get("seconds_per_image", 0.0)) * max(self.workers, 1) * (len(steps) + 2)
            affordable = size if not cost or self.metrics_budget_s is None else int(self.metrics_budget_s / cost)
            samples[method] = max(2, min(size, affordable))
        if not methods:
            return None
        began = time.process_time()
        randomized = randomize_layers(self.session.path, self.folder / "sanity" / "models", steps=steps)
        batch, _ = self.session.prepare([self.data.images[i] for i in range(size)])
        arrays = sanity_arrays(str(self.session.path), randomized, batch, labels[:size], methods, self.layer, samples)
        arrays.update(steps=np.array(steps), layers=np.array(count))
        cpu_seconds = round(time.process_time() - began, 1)  # this process's threads: the step runs here
        self.state["sanity"] = {"steps": steps, "layers": count, "samples": samples, "cpu_seconds": cpu_seconds}
        self._save_state()
        return save_npz(path, arrays)
