"""Where an evaluation's (method, chunk) tasks run: one small submit/wait seam (:class:`Engine`)
and the local engine behind it, a pool of worker processes, one per core.

Each worker explains and scores a whole chunk with a single-threaded ONNX Runtime session of its
own, built on its first chunk and kept for the next ones (:func:`chunk_session`): the cores never
wait on one another, whether a method's time goes to model passes (Score-CAM, occlusion) or to
scoring. A task says everything its worker needs and writes its own result file, so an engine only
moves tasks and the seconds they took.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from onnxcam.eval.chunks import ChunkTruth, score_chunk
from onnxcam.eval.evalset import Pixels


@dataclass(frozen=True)
class ChunkTask:
    """Explaining and scoring one (method, chunk): everything a worker process needs (picklable)."""

    model_path: str
    method: str
    weightings: tuple[str, ...]
    layer: str
    images: Pixels
    labels: np.ndarray
    truth: ChunkTruth
    path: Path
    start: int
    step: float
    metrics: tuple[str, ...] = ()
    """The groups of :data:`onnxcam.eval.chunk_metrics.CHUNK_GROUPS` to compute besides the boxes."""


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


def explain_chunk(
    task: ChunkTask, threads: int | None = None, images: list[np.ndarray] | None = None
) -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    """Every weighting of the task's method on its images (decoded here unless given), from one set
    of model passes."""
    images = [task.images[i] for i in range(len(task.images))] if images is None else images
    results = chunk_session(task.model_path, threads).explain_weightings(
        images, task.method, task.weightings, class_index=task.labels, layer=task.layer
    )
    return {weighting: (result.raw_maps, list(result.maps)) for weighting, result in results.items()}


def run_chunk(task: ChunkTask, threads: int | None = None) -> float:
    """Explain and score one chunk, write its file; returns the seconds it took per image."""
    began = time.perf_counter()
    truth = task.truth.decoded()
    images = [task.images[i] for i in range(len(task.images))]
    variants = explain_chunk(task, threads, images)
    extra: dict[str, np.ndarray] = {}
    more = _map_metrics(task, threads, images, truth, extra) if task.metrics else None
    score_chunk(task.path, task.start, variants, truth, task.step, more, extra)
    return (time.perf_counter() - began) / len(task.images)


def _map_metrics(
    task: ChunkTask, threads: int | None, decoded: list[np.ndarray], truth: ChunkTruth, extra: dict[str, np.ndarray]
):
    """The scorer of the task's :mod:`~onnxcam.eval.chunk_metrics` groups for :func:`score_chunk`;
    it records the worker seconds per image of each pass-hungry group in ``extra``."""
    from onnxcam.eval.chunk_metrics import PASS_GROUPS, localization_scores, maps_at_input, object_masks, pass_scores, seconds_key

    def more(maps: list[np.ndarray], images: list[int]) -> dict[str, np.ndarray]:
        rows = {}
        if "localization" in task.metrics:
            shapes = [np.asarray(m).shape for m in maps]
            picked = truth.rows(images)
            rows.update(localization_scores(maps, object_masks(picked.gt_boxes, picked.masks, shapes)))
        for group in (g for g in PASS_GROUPS if g in task.metrics):
            began = time.perf_counter()
            session = chunk_session(task.model_path, threads)
            batch, _ = session.prepare(decoded)
            at_input = maps_at_input(maps, batch.shape[2:])
            rows.update(pass_scores(group, session, batch[images], at_input, task.labels[images]))
            extra[seconds_key(group)] = np.array((time.perf_counter() - began) / len(task.images))
        return rows

    return more


class Engine(Protocol):
    """Runs :func:`run_chunk` on tasks, somewhere. ``workers``: the tasks it runs at once (the run
    shares a method's time budget among them and keeps at most two tasks per worker in flight)."""

    workers: int

    def submit(self, task: ChunkTask) -> object:
        """Start ``task``; returns a handle for :meth:`wait` and :meth:`result`."""

    def wait(self, handles: Sequence[object], timeout: float | None = None) -> list[object]:
        """The finished ones of ``handles``: at least one unless ``timeout`` (seconds) passes first."""

    def result(self, handle: object) -> float:
        """A task's seconds per image (waiting for it); raises the task's error."""

    def close(self) -> None:
        """Release the workers. Tasks still in flight finish or are dropped: a dropped task's file
        is simply missing, and a rerun computes it."""


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one worker per core; OpenCV's own threads would oversubscribe


class LocalEngine:
    """``workers`` processes on this machine, each with a one-thread session; ``workers=0``: every
    task runs here and now, in :meth:`submit`, with a session of one thread per core."""

    def __init__(self, workers: int | None = None):
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._executor = None
        if self.workers > 0:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_worker_init)

    def submit(self, task: ChunkTask) -> Future:
        if self._executor is not None:
            return self._executor.submit(run_chunk, task, 1)  # one process per core: one intra-op thread each
        future: Future = Future()
        future.set_result(run_chunk(task))
        return future

    def wait(self, handles: Sequence[Future], timeout: float | None = None) -> list[Future]:
        return list(wait(handles, timeout=timeout, return_when=FIRST_COMPLETED).done)

    def result(self, handle: Future) -> float:
        return handle.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
