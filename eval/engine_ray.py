"""The Ray engine: each (method, chunk) task of an evaluation runs as a Ray task on a cluster
(``onnxcam eval --engine ray``; needs ``pip install "onnxcam[ray]"``).

A task carries ids, paths and annotations (an on-disk set's pixels never travel: its worker reads
them from the file system the cluster shares) and writes its result file itself with the same
temp-file-and-rename writer as the local engine, so ``run.json`` and the result files stay the
single source of truth and a rerun resumes on either engine. Each Ray worker process builds the
model's session on its first task and keeps it (:func:`onnxcam.eval.engine.chunk_session`). A task
whose worker or node dies is run again by Ray (``max_retries``) and, being deterministic, writes
the same file.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import replace

from onnxcam.eval.engine import ChunkTask, run_chunk

CONNECT_TIMEOUT_S = 30.0
"""How long an address may take to answer before the run stops with an error."""
TASK_RETRIES = 5
"""Ray reruns a task whose worker process or node died this many times."""
INSTALL_HINT = 'the Ray engine needs Ray: pip install "onnxcam[ray]"'


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from None
    return ray


def _run_in_worker(task: ChunkTask) -> float:
    """:func:`run_chunk` in a Ray worker (one CPU: one intra-op thread, OpenCV on one thread)."""
    import cv2

    cv2.setNumThreads(1)
    return run_chunk(task, 1)


def _absolute(task: ChunkTask) -> ChunkTask:
    """The task with absolute paths: a Ray worker does not run in the driver's folder."""
    images = task.images.absolute() if hasattr(task.images, "absolute") else task.images
    masks = task.truth.masks
    truth = replace(task.truth, masks=masks.absolute()) if hasattr(masks, "absolute") else task.truth
    return replace(
        task, model_path=os.path.abspath(task.model_path), path=task.path.absolute(), images=images, truth=truth
    )


def check_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """``host:port`` of the Ray cluster ``address`` names (``auto``: the one started on this
    machine), after checking that it answers within ``timeout_s``: Ray's own client waits for an
    unreachable cluster forever."""
    ray = _import_ray()
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address_or_die  # how ray.init resolves it

        address = canonicalize_bootstrap_address_or_die("auto")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r} is not HOST:PORT or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(
            f"no Ray cluster answers at {address} within {timeout_s:g} s ({exc}); start one with "
            f"`ray start --head` or give the head node's address (ray {ray.__version__})"
        ) from None
    return address


class RayEngine:
    """Runs tasks as Ray tasks on the cluster at ``address`` (``auto`` or ``HOST:PORT``); without
    an address, on a Ray instance started here for the run (``workers`` CPUs, default: every core)
    and stopped by :meth:`close`. ``workers``: the CPUs of the cluster, one task each."""

    def __init__(self, address: str | None = None, workers: int | None = None, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        ray = _import_ray()
        self._ray = ray
        options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address is None:
            ray.init(num_cpus=workers or os.cpu_count() or 1, **options)
        else:
            ray.init(address=check_address(address, connect_timeout_s), **options)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_run_in_worker)

    def submit(self, task: ChunkTask):
        return self._remote.remote(_absolute(task))

    def wait(self, handles: Sequence, timeout: float | None = None) -> list:
        ready, _ = self._ray.wait(list(handles), num_returns=1, timeout=timeout)
        return ready

    def result(self, handle) -> float:
        try:
            return self._ray.get(handle)
        except self._ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None  # the task's own error, not Ray's wrapper

    def close(self) -> None:
        """Disconnect; a Ray instance started for the run stops with it. Tasks still in flight
        are cancelled (the driver owns them): their result files are simply not there yet."""
        self._ray.shutdown()
