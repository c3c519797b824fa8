"""mnist.train_distributed as a TrainJob on the repository's TensorFlow runtime, and as the legacy
TFJob, run on this machine.

The harness (tests.harness.jobs) starts each node or replica as a process with the environment
its controller would give it: for the TrainJob, the runtime's own entry point derives TF_CONFIG
from the pod index and the peers' addresses; for the TFJob, the Training Operator's TF_CONFIG.
Restarts follow the runtime's JobSet rules or the TFJob's restartPolicy. The manifests' own
commands run, shrunk to the committed sample by case.toml's smoke overrides (as `python -m
tests.harness run --smoke` runs them): 3 epochs of 56 global batches of 64 images.
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

from tests.harness import cases, jobs, manifests, operators, trainer

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
CASE = cases.load_case(REPO_ROOT / "mnist")
MANIFESTS = CASE.path / "manifests"
TRAINJOB = MANIFESTS / "trainjob.yaml"
RUNTIME = MANIFESTS / "tensorflow-runtime.yaml"
MANIFEST = MANIFESTS / "legacy-v1" / "tfjob.yaml"  # the Training Operator v1 variant
RUNTIMES = trainer.runtimes_beside(TRAINJOB)
PROGRAM = ["python", "-m", "mnist.train_distributed"]
# case.toml's smoke arguments of the TrainJob, the program's flags: what one process runs too.
SMOKE_FLAGS = CASE.overrides_for(TRAINJOB)["spec.trainer.args"][len(PROGRAM) :]
EPOCHS = int(next(a for a in SMOKE_FLAGS if a.startswith("--epochs=")).split("=")[1])
# About 0.95 test accuracy on the sample, with one worker or two; a global batch of 64.
FLOOR = CASE.floor("test_accuracy", "distributed")  # chance is 0.10
CLOSE = 0.02  # two workers against one process, same global batches: dropout noise only
ARGS = "spec.tfReplicaSpecs.{}.template.spec.containers[0].args"
METRIC_LINE = re.compile(r"^(\w+)=(\S+)$")  # what Katib's StdOut collector picks out
RESUMED = re.compile(r"resumed from step (\d+)")
DIGEST = re.compile(r"^(worker-\d+|chief-\d+): weights digest (\w+)$", re.M)
JOB_TIMEOUT = 600  # seconds; only stops a hang
# Two replicas share this machine's 2 cores: one thread each, as two pods of `cpu: 1` would get,
# instead of both spreading over every core (about 1.5 times faster here, same model).
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def with_flag(args: list[str], name: str, value: object) -> list[str]:
    return [f"--{name}={value}" if a.startswith(f"--{name}=") else a for a in args]


def smoke_job(worker_model_dir: str | None = None) -> dict:
    """The TFJob with case.toml's overrides; worker_model_dir: a model dir of the worker's own."""
    overrides = CASE.overrides_for(MANIFEST)
    if worker_model_dir:
        worker = ARGS.format("Worker")
        overrides[worker] = with_flag(overrides[worker], "model-dir", worker_model_dir)
    return manifests.apply_overrides(manifests.load(MANIFEST)[0], overrides)


def smoke_trainjob(nodes: int | None = None) -> dict:
    """The TrainJob with case.toml's overrides, on `nodes` nodes (TF_NUM_NODES kept equal) if given."""
    overrides = CASE.overrides_for(TRAINJOB)
    if nodes is not None:
        overrides["spec.trainer.numNodes"] = nodes
        overrides["spec.trainer.env"] = [{"name": "TF_NUM_NODES", "value": str(nodes)}]
    return manifests.apply_overrides(manifests.load(TRAINJOB)[0], overrides)


def run_trainjob(doc: dict, workdir: Path, **kwargs: object) -> jobs.JobResult:
    return jobs.run_job(
        doc, workdir=workdir, timeout=JOB_TIMEOUT, env=ONE_THREAD, runtimes=RUNTIMES, **kwargs
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
    flags = [a for a in SMOKE_FLAGS if not a.startswith(("--model-dir=", "--checkpoint-dir="))]
    cmd = [sys.executable, "-m", "mnist.train_distributed", *flags]
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
    """The legacy TFJob, Chief + 1 Worker; the worker gets a --model-dir of its own, to see it stay
    empty."""
    doc = smoke_job(worker_model_dir="/mnt/pvc/worker-model")
    workdir = tmp_path_factory.mktemp("tfjob")
    return jobs.run_job(doc, workdir=workdir, timeout=JOB_TIMEOUT, env=ONE_THREAD)


def program_args(doc: dict) -> list[list[str]]:
    """The program's arguments in each replica (TFJob) or in the trainer (TrainJob)."""
    if doc["kind"] == "TrainJob":
        return [doc["spec"]["trainer"]["args"][len(PROGRAM) :]]
    specs = doc["spec"]["tfReplicaSpecs"].values()
    return [s["template"]["spec"]["containers"][0]["args"] for s in specs]


@pytest.mark.parametrize("manifest", [MANIFEST, TRAINJOB], ids=["tfjob", "trainjob"])
def test_the_smoke_jobs_are_the_cluster_jobs_but_for_their_sizes(manifest: Path) -> None:
    """What the tests below run is what a cluster runs: case.toml swaps the arguments only, for
    the sample, fewer epochs and more frequent checkpoints; every other flag is the cluster's,
    so the model and the checkpoints go where a cluster's would."""
    overrides = CASE.overrides_for(manifest)
    assert overrides and all(key.endswith(".args") for key in overrides), overrides
    cluster = manifests.load(manifest)[0]
    smoke = smoke_trainjob() if manifest == TRAINJOB else smoke_job()
    assert manifests.validate(smoke) == []
    sizes = ("--epochs=", "--checkpoint-steps=", "--data-dir=")
    for before, after in zip(program_args(cluster), program_args(smoke), strict=True):
        assert "--sample" not in before and "--sample" in after  # the full data on a cluster
        assert [a for a in before if not a.startswith(sizes)] == [
            a for a in after if not a.startswith(sizes) and a != "--sample"
        ]
    if manifest == TRAINJOB:  # the runtime's entry point runs the args: the program stays
        assert smoke["spec"]["trainer"]["args"][: len(PROGRAM)] == PROGRAM


def test_the_operator_finds_the_container_and_port_it_configures() -> None:
    # The harness falls back to a pod's only container and picks free ports, so a misnamed
    # container or port would pass the runs below and break on a cluster: the Training Operator
    # sets TF_CONFIG only in the container named `tensorflow`, naming the port `tfjob-port`
    # (its default, 2222) of every replica.
    doc = manifests.load(MANIFEST)[0]
    field, _, framework = operators.TRAINING_OPERATOR[doc["kind"]]
    for spec in doc["spec"][field].values():
        (container,) = [c for c in spec["template"]["spec"]["containers"] if c["name"] == framework]
        assert {"name": "tfjob-port", "containerPort": 2222} in container["ports"]


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
        ends = re.findall(rf"^{task}: epoch (\d+)/{EPOCHS} step (\d+)/\2,", log, re.M)
        assert [int(epoch) for epoch, _ in ends] == list(range(1, EPOCHS + 1)), task

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
    assert printed["epoch"] == list(range(1, EPOCHS + 1))
    for name in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert len(printed[name]) == EPOCHS, name
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
    doc = smoke_job()
    result = jobs.run_job(
        doc,
        workdir=tmp_path,
        timeout=JOB_TIMEOUT,
        env=ONE_THREAD,
        kill_after={("Worker", 0): checkpoint_state.exists},  # SIGKILL once a checkpoint exists
    )
    if not result.succeeded:
        result.raise_for_failure()
    chief, worker = result.replica("Chief"), result.replica("Worker")
    assert worker.exit_codes[0] == 137 and worker.restarts >= 1
    # The chief did not hang on its dead peer: it failed, and OnFailure restarted it too (a
    # restartPolicy of ExitCode would not have: its exit code is not a retryable one).
    assert chief.exit_codes[0] not in (0, 137) and chief.restarts >= 1
    assert chief.exit_codes[0] not in operators.RETRYABLE_EXIT_CODES
    # One lost replica costs a few restarts, within the manifest's backoffLimit, with room for
    # another loss.
    assert chief.restarts + worker.restarts < doc["spec"]["runPolicy"]["backoffLimit"]
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


# --- the TrainJob on the tensorflow-distributed runtime --------------------------------------


def test_runtime_and_trainjob_agree_on_the_node_count() -> None:
    assert manifests.validate_file(RUNTIME) == [] and manifests.validate_file(TRAINJOB) == []
    job = manifests.load(TRAINJOB)[0]
    runtime = trainer.resolve(
        job, RUNTIMES
    )  # the repository's own: Trainer ships no TensorFlow one
    assert runtime in RUNTIMES
    assert trainer.framework(runtime) is None  # no policy: PlainML, numNodes sets the pod count
    assert "command" not in job["spec"]["trainer"]  # the runtime's entry point must stay
    # PlainML tells the pods neither their count nor their peers: the entry point reads it here.
    env = {e["name"]: e.get("value") for e in job["spec"]["trainer"]["env"]}
    assert env["TF_NUM_NODES"] == str(job["spec"]["trainer"]["numNodes"])


def tf_config_of_each_node(tmp_path: Path, nodes: int) -> list[dict]:
    """The TF_CONFIG the runtime's entry point gives each of `nodes` nodes, run by the harness."""
    doc = smoke_trainjob(nodes)
    show = "import json, os; print('TFCONFIG', os.environ['TF_CONFIG'])"
    doc["spec"]["trainer"]["args"] = ["python", "-c", show]
    result = jobs.run_job(doc, workdir=tmp_path / str(nodes), timeout=60, runtimes=RUNTIMES)
    result.raise_for_failure()
    configs = []
    for node in result.replicas:
        line = next(x for x in node.log().splitlines() if x.startswith("TFCONFIG "))
        configs.append(json.loads(line.removeprefix("TFCONFIG ")))
    return configs


@pytest.mark.parametrize("nodes", [1, 2, 3])
def test_the_runtime_derives_the_tf_config_multiworker_strategy_expects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nodes: int
) -> None:
    import tensorflow as tf

    configs = tf_config_of_each_node(tmp_path, nodes)
    workers = configs[0]["cluster"]["worker"]
    assert len(workers) == len(set(workers)) == nodes
    for index, config in enumerate(configs):
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        # What MultiWorkerMirroredStrategy reads: one `worker` job of every node, this node's
        # index; worker 0 is the chief, which writes the model (no separate chief task).
        assert resolver.cluster_spec().as_dict() == {"worker": workers}
        assert (resolver.task_type, resolver.task_id) == ("worker", index)


def entry_point(env: dict[str, str]) -> subprocess.CompletedProcess:
    """The runtime's entry point as a pod runs it, printing TF_CONFIG instead of training."""
    container = RUNTIMES[0]["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"][
        "template"
    ]["spec"]["containers"][0]
    argv = [*container["command"], "sh", "-c", 'echo "$TF_CONFIG"']
    return subprocess.run(
        argv, env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=30
    )


def test_on_a_cluster_the_peers_are_jobset_dns_names() -> None:
    # No NODE_ADDRESSES: the names JobSet's headless service resolves, on TF_PORT.
    run = entry_point(
        {
            "JOB_COMPLETION_INDEX": "2",
            "TF_NUM_NODES": "3",
            "JOBSET_NAME": "mnist",
            "TF_PORT": "2222",
        }
    )
    assert run.returncode == 0, run.stderr
    config = json.loads(run.stdout.splitlines()[-1])
    assert config == {
        "cluster": {"worker": [f"mnist-node-0-{i}.mnist:2222" for i in range(3)]},
        "task": {"type": "worker", "index": 2},
    }
    # A count that does not match the pods: one line saying what to fix, exit 2.
    run = entry_point(
        {
            "JOB_COMPLETION_INDEX": "1",
            "TF_NUM_NODES": "1",
            "JOBSET_NAME": "mnist",
            "TF_PORT": "2222",
        }
    )
    assert run.returncode == 2 and "set trainer.env TF_NUM_NODES to trainer.numNodes" in run.stderr
    run = entry_point({"JOB_COMPLETION_INDEX": "0", "TF_NUM_NODES": "two"})
    assert run.returncode == 2 and "TF_NUM_NODES must be a number" in run.stderr


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> jobs.JobResult:
    return run_trainjob(smoke_trainjob(), tmp_path_factory.mktemp("trainjob"))


def test_two_nodes_train_one_model_with_identical_weights(
    two_nodes: jobs.JobResult, one_process: dict
) -> None:
    result = two_nodes
    if not result.succeeded:
        result.raise_for_failure()
    assert result.reason == "Complete"
    logs = [result.replica("Node", i).log() for i in (0, 1)]
    assert "worker-0: one of 2 replicas, the chief" in logs[0]
    assert "worker-1: one of 2 replicas" in logs[1] and "the chief" not in logs[1]
    for task, log in (("worker-0", logs[0]), ("worker-1", logs[1])):
        ends = re.findall(rf"^{task}: epoch (\d+)/{EPOCHS} step (\d+)/\2,", log, re.M)
        assert [int(epoch) for epoch, _ in ends] == list(range(1, EPOCHS + 1)), task
    # The replicas synchronised every step: they end with the same weights, to the bit.
    digests = dict(DIGEST.findall("\n".join(logs)))
    assert sorted(digests) == ["worker-0", "worker-1"]
    assert digests["worker-0"] == digests["worker-1"], digests

    volume = result.workdir / "volumes" / "models"
    assert sorted(p.name for p in (volume / "mnist").iterdir()) == ["metrics.json", "model.keras"]
    assert not list((volume / "checkpoints").rglob("ckpt-*"))  # deleted once training is done
    metrics = json.loads((volume / "mnist" / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["test_accuracy"] >= FLOOR, metrics
    assert abs(metrics["test_accuracy"] - one_process["test_accuracy"]) <= CLOSE
    assert printed_metrics(logs[0])["test_accuracy"][-1] == metrics["test_accuracy"]
    print(
        f"trainjob, two nodes: test_accuracy={metrics['test_accuracy']:.4f} "
        f"(one process {one_process['test_accuracy']:.4f}) in {result.seconds:.1f}s"
    )


def test_the_trainjob_model_is_the_softmax_model_a_server_loads(two_nodes: jobs.JobResult) -> None:
    import keras

    from mnist import data

    model_dir = two_nodes.workdir / "volumes" / "models" / "mnist"
    model = keras.saving.load_model(model_dir / "model.keras")
    _, (test_x, test_y) = data.load_sample()
    probs = np.asarray(model.predict(data.normalize(test_x), verbose=0))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    accuracy = float(np.mean(probs.argmax(axis=1) == test_y))
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=0.002)


def test_a_killed_node_restarts_the_gang_which_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    volume = tmp_path / "volumes" / "models"
    checkpoint_state = volume / "checkpoints" / "trainjob" / "checkpoint"  # written after each save
    doc = smoke_trainjob()
    result = run_trainjob(
        doc,
        tmp_path,
        kill_after={("Node", 1): checkpoint_state.exists},  # SIGKILL once a checkpoint exists
    )
    if not result.succeeded:
        result.raise_for_failure()
    chief, worker = result.replica("Node", 0), result.replica("Node", 1)
    assert worker.exit_codes[0] == 137
    # The runtime's Job failed at once (no pod restarts in place: collectives need every node)
    # and JobSet recreated both nodes, the survivor stopped, within the runtime's bound.
    assert chief.restarts == worker.restarts == 1, (chief.exit_codes, worker.exit_codes)
    assert worker.restarts <= trainer.max_restarts(trainer.resolve(doc, RUNTIMES))
    resumed = {r.name: [int(k) for k in RESUMED.findall(r.log())] for r in (chief, worker)}
    assert resumed["node-1"] and resumed["node-1"][-1] > 0, resumed
    assert resumed["node-0"][-1] == resumed["node-1"][-1], resumed  # from the same checkpoint
    metrics = json.loads((volume / "mnist" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= FLOOR, metrics
    print(
        f"fault: node 1 exits {worker.exit_codes}, node 0 exits {chief.exit_codes}, resumed at "
        f"step {resumed['node-1'][-1]}, test_accuracy={metrics['test_accuracy']:.4f} "
        f"in {result.seconds:.1f}s"
    )
