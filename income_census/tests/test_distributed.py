"""income_census.train_distributed as the XGBoostJob in manifests/xgboostjob.yaml, on this machine.

The harness (tests.harness.jobs) starts the Master and the Worker as processes with the
MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK the Training Operator sets; the manifest's own
command runs with case.toml's smoke arguments (the sample, 50 rounds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import pytest

from income_census import data
from tests.harness import cases, jobs, manifests

REPO_ROOT = Path(__file__).resolve().parents[2]
CASE = cases.load_case(REPO_ROOT / "income_census")
MANIFEST = CASE.path / "manifests" / "xgboostjob.yaml"
CLOSE = 0.01  # the bar: two workers within 1 point of one process on the same data
JOB_TIMEOUT = 300  # seconds; only stops a hang
OPERATOR_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")


def smoke_args() -> list[str]:
    args = CASE.overrides_for(MANIFEST)[
        "spec.xgbReplicaSpecs.Master.template.spec.containers[0].args"
    ]
    return [a for a in args if not a.startswith(("--model-dir", "--checkpoint-dir"))]


def one_process(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """train_distributed with no operator env: one worker that runs its own tracker."""
    env = {k: v for k, v in os.environ.items() if k not in OPERATOR_ENV}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    cmd = [sys.executable, "-m", "income_census.train_distributed", *smoke_args(), *extra]
    run = subprocess.run(
        [*cmd, f"--model-dir={tmp / 'model'}", f"--checkpoint-dir={tmp / 'checkpoints'}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _free_port() -> int:
    from tests.harness import procs

    return procs.free_port()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> jobs.JobResult:
    doc = manifests.apply_overrides(manifests.load(MANIFEST)[0], CASE.overrides_for(MANIFEST))
    return jobs.run_job(doc, workdir=tmp_path_factory.mktemp("xgboostjob"), timeout=JOB_TIMEOUT)


def test_manifest_is_a_master_and_a_worker() -> None:
    doc = manifests.load(MANIFEST)[0]
    assert (doc["apiVersion"], doc["kind"]) == ("kubeflow.org/v1", "XGBoostJob")
    specs = doc["spec"]["xgbReplicaSpecs"]
    assert sorted(specs) == ["Master", "Worker"]
    for spec in specs.values():
        container = spec["template"]["spec"]["containers"][0]
        assert container["name"] == "xgboost"  # the operator injects its env into this name
        assert {"name": "xgboostjob-port", "containerPort": 9991} in container["ports"]
        assert container["command"] == ["python", "-m", "income_census.train_distributed"]
        assert "--sample" not in container["args"]  # the full data on a cluster


def test_two_workers_train_the_model_one_process_trains(
    two_workers: jobs.JobResult, tmp_path: Path
) -> None:
    result = two_workers
    if not result.succeeded:
        result.raise_for_failure()
    assert result.reason == "XGBoostJobSucceeded"
    master, worker = result.replica("Master").log(), result.replica("Worker").log()
    assert "rank=0 world_size=2" in master and "rank=1 world_size=2" in worker
    assert "rank=0 trained 50 rounds" in master and "rank=1 trained 50 rounds" in worker

    volume = result.workdir / "volumes" / "models"  # what the harness mounts at /mnt/pvc
    written = sorted(p.name for p in (volume / "income-xgboost").iterdir())
    assert written == ["background.csv", "metrics.json", "model.joblib"]
    assert not list((volume / "checkpoints").rglob("*.ubj"))  # dropped once training is done
    metrics = json.loads((volume / "income-xgboost" / "metrics.json").read_text())
    assert metrics["workers"] == 2

    one_process(tmp_path)
    single = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert single["workers"] == 1
    assert metrics["test_accuracy"] >= single["baseline_accuracy"] + 0.05, metrics
    assert abs(metrics["test_accuracy"] - single["test_accuracy"]) <= CLOSE, (metrics, single)
    print(f"two workers {metrics['test_accuracy']:.4f}, one {single['test_accuracy']:.4f}")


def test_the_exported_model_is_a_pipeline_on_raw_rows(two_workers: jobs.JobResult) -> None:
    folder = two_workers.workdir / "volumes" / "models" / "income-xgboost"
    model = joblib.load(folder / "model.joblib")
    (_, _), (test_rows, test_labels) = data.load_sample()
    accuracy = float((model.predict(test_rows) == test_labels).mean())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test_accuracy"])
    assert model.named_steps["classifier"].get_booster().num_boosted_rounds() == 50


def test_a_restarted_job_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    # What rank 0 left on the volume before a replica died: the booster after 20 rounds.
    first = one_process(tmp_path / "first", "--n-estimators=20")
    assert "resuming" not in first.stdout
    booster = joblib.load(tmp_path / "first" / "model" / "model.joblib")
    checkpoint = tmp_path / "checkpoints" / "checkpoint.ubj"
    checkpoint.parent.mkdir(parents=True)
    booster.named_steps["classifier"].get_booster().save_model(checkpoint)

    again = one_process(tmp_path)  # 50 rounds asked for, 20 already done
    assert f"resuming from {checkpoint} after 20 rounds" in again.stdout
    assert "rank=0 trained 50 rounds" in again.stdout
    resumed = joblib.load(tmp_path / "model" / "model.joblib").named_steps["classifier"]
    assert resumed.get_booster().num_boosted_rounds() == 50
    assert not checkpoint.exists()  # the finished job removes it, so the next starts fresh
    fresh = one_process(tmp_path / "fresh")
    assert "resuming" not in fresh.stdout
    # The resumed model scores as an uninterrupted run does.
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    uninterrupted = json.loads((tmp_path / "fresh" / "model" / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(uninterrupted["test_accuracy"], abs=0.002)
