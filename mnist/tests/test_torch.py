"""mnist.train_torch on the committed sample: one process, the PyTorchJob and the TrainJob.

The jobs run through the harness as their operators would run them (one process per replica on
127.0.0.1, with the env the operator sets), from the real manifests shrunk to the sample by
case.toml's smoke overrides, as `python -m tests.harness run --smoke` runs them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist import data
from mnist.train_torch import CHECKPOINT_FILE, default_threads, load_model
from tests.harness import cases
from tests.harness.containers import PathMap
from tests.harness.jobs import JobResult, run_job
from tests.harness.manifests import apply_overrides, check, load

REPO_ROOT = Path(__file__).resolve().parents[2]
CASE = cases.load_case(REPO_ROOT / "mnist")
MANIFESTS = CASE.path / "manifests"
PYTORCHJOB = MANIFESTS / "legacy-v1" / "pytorchjob.yaml"
TRAINJOB = MANIFESTS / "trainjob-torch.yaml"
EPOCHS = 2  # as case.toml's smoke overrides give the jobs
FLOOR = CASE.floor("test_accuracy", "torch")  # chance is 0.10; 2 epochs give 0.92-0.96
METRIC_LINE = re.compile(r"^(\w+)=(\S+)$")  # what Katib's StdOut collector picks out
# Replicas share this machine's two cores (with other tests): one thread each, like a pod with
# `cpu: 1`, instead of two spinning threads per process fighting over them.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def printed_metrics(text: str) -> dict[str, list[float]]:
    printed: dict[str, list[float]] = {}
    for line in text.splitlines():
        if m := METRIC_LINE.match(line):
            printed.setdefault(m[1], []).append(float(m[2]))
    return printed


def train_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "mnist.train_torch", "--sample", *args]


def train(*args: str) -> subprocess.CompletedProcess:
    run = subprocess.run(
        train_argv(*args),
        cwd=REPO_ROOT,
        env={**os.environ, **ONE_THREAD},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """One process, EPOCHS epochs, with a checkpoint dir: (the run, its work folder)."""
    root = tmp_path_factory.mktemp("torch-single")
    run = train(
        f"--epochs={EPOCHS}", f"--model-dir={root / 'model'}", f"--checkpoint-dir={root / 'ckpt'}"
    )
    return run, root


def test_single_process_prints_metrics_and_writes_the_model(single: tuple) -> None:
    run, root = single
    assert "rank 0 of world size 1" in run.stdout
    printed = printed_metrics(run.stdout)
    assert printed["epoch"] == list(range(1, EPOCHS + 1))
    for name in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert len(printed[name]) == EPOCHS, name
    assert "epoch 1/2" in run.stderr  # the progress bar

    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= FLOOR, metrics
    for name in ("accuracy", "loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss"):
        assert printed[name][-1] == metrics[name], name  # the last printed value is the final one
    assert metrics["world_size"] == 1
    print(f"single: {metrics['train_seconds'] / EPOCHS:.1f} s/epoch, {metrics['test_accuracy']}")


def test_saved_model_reloads_and_reproduces_test_accuracy(single: tuple) -> None:
    _, root = single
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    model = load_model(root / "model")
    _, (test_x, test_y) = data.load_sample()
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.normalize(test_x))).argmax(1).numpy()
    accuracy = float(np.mean(predicted == test_y))
    assert accuracy >= FLOOR
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-3)  # one image in 1,000


def test_the_checkpoint_goes_once_the_model_is_written(single: tuple) -> None:
    _, root = single
    assert (root / "model" / "model.pt").stat().st_size > 0
    # Otherwise the job applied again with this --checkpoint-dir would resume after its last
    # epoch, train nothing and write the old model once more.
    assert (root / "ckpt").is_dir() and not (root / "ckpt" / CHECKPOINT_FILE).exists()


def interrupt_after_a_checkpoint(*args: str, checkpoint: Path) -> int:
    """Run the trainer and SIGKILL it as soon as it has saved a checkpoint, as a lost node would;
    return the epoch that checkpoint holds."""
    proc = subprocess.Popen(
        train_argv(*args),
        cwd=REPO_ROOT,
        env={**os.environ, **ONE_THREAD},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while not checkpoint.exists():  # written whole or not at all (save_checkpoint)
            assert proc.poll() is None, f"exited {proc.returncode} before it saved a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint in 600 s"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    return torch.load(checkpoint)["epoch"]


def test_resume_starts_after_the_saved_epoch(single: tuple, tmp_path: Path) -> None:
    first, _ = single
    epochs = EPOCHS + 1
    args = (f"--epochs={epochs}", f"--checkpoint-dir={tmp_path / 'ckpt'}")
    checkpoint = tmp_path / "ckpt" / CHECKPOINT_FILE
    saved = interrupt_after_a_checkpoint(
        *args, f"--model-dir={tmp_path / 'lost'}", checkpoint=checkpoint
    )
    assert 1 <= saved < epochs  # killed mid-training (within 0.05 s of the first save, in fact)
    assert not (tmp_path / "lost").exists()  # no model from the interrupted run

    run = train(*args, f"--model-dir={tmp_path / 'model'}")
    assert f"resuming after epoch {saved}" in run.stdout
    printed = printed_metrics(run.stdout)
    assert printed["epoch"] == list(range(saved + 1, epochs + 1))  # only the missing epochs
    # Trained weights and optimizer state came back: a fresh model's first epoch is far worse.
    assert printed["loss"][0] < printed_metrics(first.stdout)["loss"][0]
    assert not checkpoint.exists()  # the finished job dropped it
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["test_accuracy"] >= FLOOR


def test_threads_default_to_this_process_share_of_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cpus))
    assert default_threads() == 1  # torchrun's processes on one node split its CPUs
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3


def test_threads_default_without_sched_getaffinity(monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS and Windows have no os.sched_getaffinity: the CPU count stands in for it."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert 1 <= default_threads() <= (os.cpu_count() or 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(os.cpu_count()))
    assert default_threads() == 1


@pytest.mark.parametrize("manifest", [PYTORCHJOB, TRAINJOB], ids=["pytorchjob", "trainjob"])
def test_the_smoke_jobs_are_the_cluster_jobs_but_for_their_arguments(manifest: Path) -> None:
    """What the tests below run is what a cluster runs: case.toml swaps only the arguments, to
    the sample and fewer epochs, and keeps where the model and the checkpoints go."""
    overrides = CASE.overrides_for(manifest)
    assert overrides and all(key.endswith(".args") for key in overrides), overrides
    cluster = load(manifest)[0]
    for key, after in overrides.items():
        (before,) = {tuple(c.get("args", [])) for c in containers_at(cluster, key)}
        assert "--sample" not in before and "--sample" in after  # the full data on a cluster
        kept = [a for a in before if a.startswith(("--model-dir=", "--checkpoint-dir="))]
        assert len(kept) == 2 and set(kept) <= set(after), (before, after)
        assert f"--epochs={EPOCHS}" in after


def containers_at(doc: dict, key: str) -> list[dict]:
    """The container (or the TrainJob's trainer) an override key's `args` belong to."""
    if key == "spec.trainer.args":
        return [doc["spec"]["trainer"]]
    replica_type = key.split(".")[2]  # spec.pytorchReplicaSpecs.<type>.template...
    return doc["spec"]["pytorchReplicaSpecs"][replica_type]["template"]["spec"]["containers"][:1]


def with_model_dir(args: list[str], model_dir: str) -> list[str]:
    return [f"--model-dir={model_dir}" if a.startswith("--model-dir") else a for a in args]


def run_smoke(
    manifest: Path, tmp_path: Path, worker_model_dir: str | None = None, **kwargs: object
) -> tuple[JobResult, PathMap]:
    """The manifest with case.toml's overrides; worker_model_dir: a model dir of the worker's own."""
    overrides = CASE.overrides_for(manifest)
    if worker_model_dir:
        key = next(k for k in overrides if ".Worker." in k)
        overrides[key] = with_model_dir(overrides[key], worker_model_dir)
    doc = apply_overrides(load(manifest)[0], overrides)
    check(doc)
    paths = PathMap(tmp_path)  # run_job adds the volume mounts: it says where /mnt/pvc went
    result = run_job(doc, workdir=tmp_path, timeout=600, env=ONE_THREAD, paths=paths, **kwargs)
    result.raise_for_failure()
    return result, paths


def test_pytorchjob_trains_on_master_and_worker_and_survives_a_killed_worker(
    tmp_path: Path,
) -> None:
    checkpoint = tmp_path / "volumes" / "models" / "checkpoints" / "pytorchjob" / CHECKPOINT_FILE
    result, paths = run_smoke(
        PYTORCHJOB,
        tmp_path,
        # A model dir of the worker's own, which must stay empty: only rank 0 writes.
        worker_model_dir="/mnt/pvc/w",
        # The node goes away once epoch 1 is saved: both replicas must restart and resume.
        kill_after={("Worker", 0): checkpoint.exists},
    )
    assert paths.host("/mnt/pvc/checkpoints/pytorchjob") / CHECKPOINT_FILE == checkpoint
    assert result.reason == "PyTorchJobSucceeded"
    assert result.replica("Worker").exit_codes[0] == 137
    assert result.replica("Master").exit_codes == [1, 0]  # its all-reduce failed, then it resumed
    master, worker = result.replica("Master").log(), result.replica("Worker").log()
    assert "rank 0 of world size 2: gloo" in master and "rank 1 of world size 2: gloo" in worker
    assert "1800 images in 113 steps of 16" in master and "1800 images in 113 steps of 16" in worker
    assert "rank 0: resuming after epoch 1" in master and "rank 1: resuming after epoch 1" in worker
    assert printed_metrics(master)["epoch"] == list(range(1, EPOCHS + 1))  # each epoch once
    assert printed_metrics(worker) == {}  # metric lines come from rank 0 only

    model_dir = paths.host("/mnt/pvc/mnist-torch")
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["test_accuracy"] >= FLOOR, metrics
    load_model(model_dir)  # model.json and model.pt rebuild the trained network
    assert not paths.host("/mnt/pvc/w").exists()
    assert not checkpoint.exists()  # rank 0 dropped it once the model was written


def test_trainjob_runs_torchrun_on_two_nodes(tmp_path: Path) -> None:
    # The stock torch-distributed runtime does not wrap the command in torchrun: the manifest
    # calls it, or each node would run one process that never joins the others.
    assert load(TRAINJOB)[0]["spec"]["trainer"]["command"][0] == "torchrun"
    result, paths = run_smoke(TRAINJOB, tmp_path)
    assert result.reason == "Complete"
    logs = [result.replica("Node", i).log() for i in (0, 1)]
    assert "rank 0 of world size 2: gloo" in logs[0] and "rank 1 of world size 2: gloo" in logs[1]
    assert printed_metrics(logs[1]) == {}

    metrics = json.loads((paths.host("/mnt/pvc/mnist-torch") / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["test_accuracy"] >= FLOOR, metrics
    assert not (paths.host("/mnt/pvc/checkpoints/trainjob-torch") / CHECKPOINT_FILE).exists()
    print(f"trainjob: {metrics['train_seconds'] / EPOCHS:.1f} s/epoch, {metrics['test_accuracy']}")
