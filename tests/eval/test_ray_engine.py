"""``onnxcam eval --engine ray`` on a real multi-node Ray cluster on this machine: the same result
files as the local engine, also when a worker process or a whole node dies mid-run, and a run whose
driver was killed resumes under the local engine.

Each node has one CPU and a small object store; Ray's files go to a temporary HOME (its auth token)
and a temporary folder of this module's own (``RAY_TMPDIR``), and the cluster is stopped through
its own handle: never ``ray stop``, which would end every Ray process on the machine.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.run_files import chunk_results
from onnxcam.eval.engine import LocalEngine
from onnxcam.eval.run import EvaluationRun

NODE = dict(num_cpus=1, object_store_memory=80 * 2**20)
METHODS = ["gradcam", "gradcam++"]
OPTIONS = dict(methods=METHODS, step=0.05, chunk_size=3, progress=False)
TASK_TITLE = b"ray::_run_in_worker"  # the process title of a Ray worker running an evaluation task


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory):
    """HOME and Ray's temporary folder of this module's own (a short path: Ray's sockets live there)."""
    pytest.importorskip("ray")
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        patch.setenv("RAY_TMPDIR", folder)
        yield
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(ray_env):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=NODE)
    cluster.add_node(**NODE)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="module")
def engine(cluster):
    """One connection for the module's runs: its worker processes, and their sessions, serve them all."""
    from onnxcam.eval.engine_ray import RayEngine

    engine = RayEngine(cluster.address)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A CAM-ready synthetic_resnet (seeded random init: the numbers need not be good, only equal)."""
    torch = pytest.importorskip("torch")
    from onnxcam.eval.datasets.synthetic import CLASS_NAMES
    from onnxcam.export.synthetic_models import build_synthetic_model, checkpoint_dict, export_synthetic_model

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    network = build_synthetic_model("synthetic_resnet")
    torch.save(checkpoint_dict("synthetic_resnet", network, 96, CLASS_NAMES), folder / "model.pt")
    return export_synthetic_model(folder / "model.pt", folder / "synthetic_resnet.onnx")


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory) -> Path:
    """18 synthetic images written as a WSOL-eval folder (PNG): tasks carry their paths."""
    from onnxcam.eval.datasets.synthetic import make_synthetic_dataset
    from onnxcam.eval.datasets.writers import write_dataset

    return write_dataset(make_synthetic_dataset(18, 5, 96, 12).objects(), tmp_path_factory.mktemp("wsol"), "wsol", "png")


def eval_set(folder: Path):
    from onnxcam.eval.datasets.eval_sets import wsol_eval_set

    return wsol_eval_set(folder / "metadata" / "boxes", folder)


@pytest.fixture(scope="module")
def reference(model, on_disk, tmp_path_factory) -> Path:
    """The local engine's run (one worker process, as every Ray task has one CPU)."""
    out = tmp_path_factory.mktemp("local")
    engine = LocalEngine(1)
    try:
        EvaluationRun(model, eval_set(on_disk), out, engine=engine, **OPTIONS).run()
    finally:
        engine.close()
    return out


def result_files(out: Path) -> dict[Path, dict[str, np.ndarray]]:
    return chunk_results(out, "runs/*/*/chunks/*/*.npz")


def assert_same_results(out: Path, reference: Path) -> None:
    ours, theirs = result_files(out), result_files(reference)
    assert sorted(ours) == sorted(theirs) and len(ours) == 3 * 6  # model + 2 methods, 18 images in 6 chunks
    for relative, arrays in theirs.items():
        assert sorted(ours[relative]) == sorted(arrays), relative
        for key, value in arrays.items():
            np.testing.assert_array_equal(ours[relative][key], value, err_msg=f"{relative} {key}")


def raylet_pids(*nodes) -> set[int]:
    return {node.all_processes["raylet"][0].process.pid for node in nodes}


def task_workers(raylets: set[int]) -> list[int]:
    """Worker processes of the given raylets now running an evaluation task."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        if title.startswith(TASK_TITLE) and parent in raylets:
            found.append(int(entry.name))
    return found


def run_in_thread(model, on_disk, out, engine) -> tuple[threading.Thread, list]:
    """An evaluation on the Ray engine in a thread of this process; errors land in the list."""
    errors: list[BaseException] = []

    def work():
        try:
            EvaluationRun(model, eval_set(on_disk), out, engine=engine, **OPTIONS).run()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    return thread, errors


def wait_for(condition, what: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return found


def method_files(out: Path) -> list[Path]:
    return [p for p in out.glob("runs/*/*/chunks/*/*.npz") if p.parent.name != "model"]


def test_a_worker_killed_mid_task_is_retried_to_identical_results(cluster, engine, model, on_disk, reference, tmp_path):
    # First of the module's runs: its workers start cold, so a task is caught while it runs.
    thread, errors = run_in_thread(model, on_disk, tmp_path, engine)
    raylets = raylet_pids(*cluster.list_all_nodes())
    victim = wait_for(lambda: task_workers(raylets), "a worker running a task")[0]
    os.kill(victim, signal.SIGKILL)
    assert len(method_files(tmp_path)) < 12, "the worker was to be killed mid-run"
    thread.join(120)
    assert not thread.is_alive() and not errors, errors
    assert_same_results(tmp_path, reference)


def test_ray_engine_writes_the_local_engines_files_and_metrics(engine, model, on_disk, reference, tmp_path):
    from onnxcam.apps.report import write_report

    assert engine.workers == 2
    EvaluationRun(model, eval_set(on_disk), tmp_path, engine=engine, **OPTIONS).run()
    assert_same_results(tmp_path, reference)
    ours = write_report(tmp_path, n_resamples=50, progress=False)
    theirs = write_report(reference, n_resamples=50, progress=False)
    assert (tmp_path / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    assert len(ours) == len(theirs) > 0


def test_a_node_removed_mid_run_ends_in_identical_results(cluster, engine, model, on_disk, reference, tmp_path):
    import ray

    release = tmp_path / "release"

    def hold(flag: str) -> None:
        while not os.path.exists(flag):
            time.sleep(0.05)

    # Two tasks hold the first nodes' CPUs, so that the run's first tasks go to the extra node.
    holders = [ray.remote(num_cpus=1)(hold).remote(str(release)) for _ in range(2)]
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 0, "the holders to start")
    node = cluster.add_node(**NODE)
    cluster.wait_for_nodes()
    thread, errors = run_in_thread(model, on_disk, tmp_path, engine)
    wait_for(lambda: task_workers(raylet_pids(node)), "a task on the extra node")
    cluster.remove_node(node)
    assert len(method_files(tmp_path)) < 12, "the node was to be removed mid-run"
    release.touch()
    ray.get(holders)
    thread.join(120)
    assert not thread.is_alive() and not errors, errors
    assert_same_results(tmp_path, reference)


def test_a_run_whose_driver_was_killed_resumes_under_the_local_engine(cluster, model, on_disk, reference, tmp_path):
    from onnxcam.eval.datasets.writers import eval_arguments

    command = [
        sys.executable, "-m", "onnxcam", "eval", str(model), *eval_arguments("wsol", on_disk),
        *(f"--method={m}" for m in METHODS), "--chunk", "3", "--step", "0.05", "--metrics", "none", "--no-report", "--quiet",
        "--engine", "ray", "--address", cluster.address, "--out", str(tmp_path),
    ]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: method_files(tmp_path) or driver.poll() is not None, "the first result file", 120)
        assert driver.poll() is None, driver.stderr.read().decode()
    finally:
        driver.kill()
        driver.wait()
    assert len(method_files(tmp_path)) < 12, "the driver was to be killed mid-run"

    engine = LocalEngine(1)
    try:
        EvaluationRun(model, eval_set(on_disk), tmp_path, engine=engine, **OPTIONS).run()
    finally:
        engine.close()
    assert_same_results(tmp_path, reference)


def test_an_address_that_does_not_answer_is_a_clear_error_within_the_timeout(ray_env):
    from onnxcam.eval.engine_ray import RayEngine

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there now
    began = time.monotonic()
    with pytest.raises(ConnectionError, match=f"no Ray cluster answers at {address}"):
        RayEngine(address, connect_timeout_s=2)
    assert time.monotonic() - began < 60


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch):
    from onnxcam.eval.engine_ray import RayEngine

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as when it is not installed
    with pytest.raises(ImportError, match=r'pip install "onnxcam\[ray\]"'):
        RayEngine()
