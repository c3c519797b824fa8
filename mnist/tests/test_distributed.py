"""mnist.train_distributed as the TFJob in mnist/manifests/tfjob.yaml, run on this machine.

The harness (tests.harness.jobs) starts each replica as a process with the TF_CONFIG the Training
Operator would set and restarts it as its restartPolicy says. The manifest's own command runs,
shrunk to the committed sample: 3 epochs of 56 global batches of 64 images.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.harness import jobs, manifests

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = REPO_ROOT / "mnist" / "manifests" / "tfjob.yaml"
# About 0.95 test accuracy on the sample, with one worker or two; a global batch of 64.
SMOKE = {"epochs": 3, "batch-size": 64}
FLOOR = 0.90  # chance is 0.10
CLOSE = 0.02  # two workers against one process, same global batches: dropout noise only
ARGS = "spec.tfReplicaSpecs.{}.template.spec.containers[0].args"
METRIC_LINE = re.compile(r"^(\w+)=(\S+)$")  # what Katib's StdOut collector picks out
RESUMED = re.compile(r"resumed from step (\d+)")
JOB_TIMEOUT = 600  # seconds; only stops a hang
# Two replicas share this machine's 2 cores: one thread each, as two pods of `cpu: 1` would get,
# instead of both spreading over every core (about 1.5 times faster here, same model).
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def shrink(args: list[str], **flags: object) -> list[str]:
    """The manifest's arguments on the sample, with SMOKE and `flags` replacing its sizes."""
    sizes = {f"--{name}": value for name, value in {**SMOKE, **flags}.items()}
    kept = [a for a in args if a.split("=")[0] not in sizes]
    return ["--sample", *kept, *(f"{name}={value}" for name, value in sizes.items())]


def smoke_job(worker_args: dict[str, object] | None = None, **flags: object) -> dict:
    """The manifest with both replicas' commands shrunk; worker_args override the worker's only."""
    doc = manifests.load(MANIFEST)[0]
    chief = doc["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["args"]
    return manifests.apply_overrides(
        doc,
        {
            ARGS.format("Chief"): shrink(chief, **flags),
            ARGS.format("Worker"): shrink(chief, **{**flags, **(worker_args or {})}),
        },
    )


def printed_metrics(log: str) -> dict[str, list[float]]:
    printed: dict[str, list[float]] = {}
    for line in log.splitlines():
        if m := METRIC_LINE.match(line):
            printed.setdefault(m[1], []).append(float(m[2]))
    return printed


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """metrics.json of train_distributed without TF_CONFIG: one worker, the same global batches."""
    tmp = tmp_path_factory.mktemp("one-process")
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    cmd = [sys.executable, "-m", "mnist.train_distributed", "--sample"]
    cmd += [f"--{name}={value}" for name, value in SMOKE.items()]
    run = subprocess.run(
        [*cmd, f"--model-dir={tmp / 'model'}", f"--checkpoint-dir={tmp / 'checkpoints'}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((tmp / "model" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory: pytest.TempPathFactory) -> jobs.JobResult:
    """The TFJob, Chief + 1 Worker; the worker gets a --model-dir of its own, to see it stay empty."""
    doc = smoke_job(worker_args={"model-dir": "/mnt/pvc/worker-model"})
    workdir = tmp_path_factory.mktemp("tfjob")
    return jobs.run_job(doc, workdir=workdir, timeout=JOB_TIMEOUT, env=ONE_THREAD)


def test_manifest_is_a_chief_and_a_worker_that_restart_on_failure() -> None:
    assert manifests.validate_file(MANIFEST) == []
    doc = manifests.load(MANIFEST)[0]
    assert (doc["kind"], doc["metadata"]["name"]) == ("TFJob", "mnist")
    assert doc["spec"]["runPolicy"]["backoffLimit"] >= 3  # a lost replica costs 2 or 3 restarts
    specs = doc["spec"]["tfReplicaSpecs"]
    assert sorted(specs) == ["Chief", "Worker"] and specs["Chief"]["replicas"] == 1
    for spec in specs.values():
        assert spec["restartPolicy"] == "OnFailure"
        container = spec["template"]["spec"]["containers"][0]
        assert container["name"] == "tensorflow"  # the operator injects TF_CONFIG into it
        assert {"name": "tfjob-port", "containerPort": 2222} in container["ports"]
        assert container["command"] == ["python", "-m", "mnist.train_distributed"]
        assert "--sample" not in container["args"]  # full data on a cluster
        assert "--checkpoint-dir=/mnt/pvc/checkpoints/tfjob" in container["args"]


def test_two_replicas_train_one_model_like_one_process(
    two_replicas: jobs.JobResult, one_process: dict
) -> None:
    result = two_replicas
    if not result.succeeded:
        result.raise_for_failure()
    assert result.reason == "TFJobSucceeded"
    chief, worker = result.replica("Chief").log(), result.replica("Worker").log()
    # Both replicas form one MultiWorkerMirroredStrategy and take every step of every epoch.
    assert "chief-0: one of 2 replicas, the chief" in chief
    assert "worker-0: one of 2 replicas" in worker
    for task, log in (("chief-0", chief), ("worker-0", worker)):
        ends = re.findall(rf"^{task}: epoch (\d+)/{SMOKE['epochs']} step (\d+)/\2,", log, re.M)
        assert [int(epoch) for epoch, _ in ends] == list(range(1, SMOKE["epochs"] + 1)), task

    volume = result.workdir / "volumes" / "models"  # what the harness mounts at /mnt/pvc
    assert sorted(p.name for p in (volume / "mnist").iterdir()) == ["metrics.json", "model.keras"]
    assert not (volume / "worker-model").exists()  # only the chief writes the model
    assert not list((volume / "checkpoints").rglob("ckpt-*"))  # deleted once training is done

    metrics = json.loads((volume / "mnist" / "metrics.json").read_text())
    assert metrics["workers"] == 2 and one_process["workers"] == 1
    assert metrics["test_accuracy"] >= FLOOR, metrics
    assert abs(metrics["test_accuracy"] - one_process["test_accuracy"]) <= CLOSE, (
        metrics,
        one_process,
    )
    # The chief prints the metric lines Katib reads: one per epoch, then the final ones.
    printed = printed_metrics(chief)
    assert printed["epoch"] == list(range(1, SMOKE["epochs"] + 1))
    for name in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert len(printed[name]) == SMOKE["epochs"], name
    for name in ("accuracy", "loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss"):
        assert printed[name][-1] == metrics[name], name
    print(
        f"two replicas: test_accuracy={metrics['test_accuracy']:.4f} "
        f"(one process {one_process['test_accuracy']:.4f}) in {result.seconds:.1f}s"
    )


def test_the_exported_model_is_the_softmax_model_a_server_loads(
    two_replicas: jobs.JobResult,
) -> None:
    import keras

    from mnist import data

    model_dir = two_replicas.workdir / "volumes" / "models" / "mnist"
    model = keras.saving.load_model(model_dir / "model.keras")
    _, (test_x, test_y) = data.load_sample()
    probs = np.asarray(model.predict(data.normalize(test_x), verbose=0))
    assert probs.shape == (len(test_x), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)  # probabilities, not logits
    accuracy = float(np.mean(probs.argmax(axis=1) == test_y))
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=0.002)  # the trained weights


def test_a_killed_worker_restarts_and_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    volume = tmp_path / "volumes" / "models"
    checkpoint_state = volume / "checkpoints" / "tfjob" / "checkpoint"  # written after each save
    result = jobs.run_job(
        smoke_job(**{"checkpoint-steps": 20}),
        workdir=tmp_path,
        timeout=JOB_TIMEOUT,
        env=ONE_THREAD,
        kill_after={("Worker", 0): checkpoint_state.exists},  # SIGKILL once a checkpoint exists
    )
    if not result.succeeded:
        result.raise_for_failure()
    chief, worker = result.replica("Chief"), result.replica("Worker")
    assert worker.exit_codes[0] == 137 and worker.restarts >= 1
    # The chief did not hang on its dead peer: it failed, and OnFailure restarted it too.
    assert chief.exit_codes[0] not in (0, 137) and chief.restarts >= 1
    resumed = {r.name: [int(k) for k in RESUMED.findall(r.log())] for r in (chief, worker)}
    assert resumed["worker-0"] and resumed["worker-0"][-1] > 0, resumed
    assert resumed["chief-0"][-1] == resumed["worker-0"][-1], resumed  # from the same checkpoint

    metrics = json.loads((volume / "mnist" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= FLOOR, metrics
    print(
        f"fault: worker exits {worker.exit_codes}, chief exits {chief.exit_codes}, resumed at "
        f"step {resumed['worker-0'][-1]}, test_accuracy={metrics['test_accuracy']:.4f} "
        f"in {result.seconds:.1f}s"
    )
