"""imdb_sentiment.train_distributed as a TrainJob on the repository's TensorFlow runtime, and as the
legacy TFJob, run on this machine.

The harness (tests.harness.jobs) starts each node or replica as a process with the environment
its controller would give it: for the TrainJob, the runtime's own entry point derives TF_CONFIG
from the pod index and the peers' addresses; for the TFJob, the Training Operator's TF_CONFIG.
Restarts follow the runtime's JobSet rules or the TFJob's restartPolicy. The manifests' own
commands run, shrunk to the committed sample by case.toml's smoke overrides (as `python -m
tests.harness run --smoke` runs them): 3 epochs of 20 global batches of 32 reviews.

The Kubeflow sample this case replaces ran `MirroredStrategy` in every pod: each pod trained a
model of its own and nothing tied them together. Here the two nodes read different halves of
every batch, yet report one loss, the mean of their two halves, and end with the same weights to
the bit: `test_two_nodes_train_one_model_with_identical_weights` checks all three.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tests.harness import cases, jobs, manifests, operators, trainer

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
CASE = cases.load_case(REPO_ROOT / "imdb_sentiment")
FLOORS = tomllib.loads((CASE.path / "case.toml").read_text())["floors"]["distributed"]
MANIFESTS = CASE.path / "manifests"
TRAINJOB = MANIFESTS / "trainjob.yaml"
RUNTIME = MANIFESTS / "tensorflow-runtime.yaml"
MANIFEST = MANIFESTS / "legacy-v1" / "tfjob.yaml"  # the Training Operator v1 variant
RUNTIMES = trainer.runtimes_beside(TRAINJOB)
PROGRAM = ["python", "-m", "imdb_sentiment.train_distributed"]
# case.toml's smoke arguments of the TrainJob, the program's flags: what one process runs too.
SMOKE_FLAGS = CASE.overrides_for(TRAINJOB)["spec.trainer.args"][len(PROGRAM) :]
EPOCHS = int(next(a for a in SMOKE_FLAGS if a.startswith("--epochs=")).split("=")[1])
BATCH = int(next(a for a in SMOKE_FLAGS if a.startswith("--batch-size=")).split("=")[1])
STEPS = 640 // BATCH  # global steps an epoch: the sample's 640 fitted reviews in whole batches
FLOOR = FLOORS["test_accuracy"]  # chance is 0.50
CLOSE = 0.02  # two workers against one process, same global batches: dropout noise only
ARGS = "spec.tfReplicaSpecs.{}.template.spec.containers[0].args"
METRIC_LINE = re.compile(r"^(\w+)=(\S+)$")  # what Katib's StdOut collector picks out
RESUMED = re.compile(r"resumed from step (\d+)")
DIGEST = re.compile(r"^(worker-\d+|chief-\d+): weights digest (\w+)$", re.M)
VOCABULARY = re.compile(r"^(worker-\d+|chief-\d+): vocabulary digest (\w+)$", re.M)
JOB_TIMEOUT = 600  # seconds; only stops a hang
# Two replicas share this machine's cores: one thread each, as two pods of `cpu: 1` would get,
# instead of both spreading over every core.
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def epoch_ends(task: str, log: str) -> list[tuple[int, float, int, float]]:
    """(epoch, loss of the global batches, reviews this worker read of each, their loss) at the
    end of every epoch the task trained."""
    line = re.compile(
        rf"^{task}: epoch (\d+)/{EPOCHS} step {STEPS}/{STEPS}, loss ([\d.]+)"
        r" \(on this worker's (\d+) reviews of each batch ([\d.]+)\)$",
        re.M,
    )
    return [(int(e), float(g), int(n), float(o)) for e, g, n, o in line.findall(log)]


# Copied from mnist.tests.test_distributed.with_flag
def with_flag(args: list[str], name: str, value: object) -> list[str]:
    return [f"--{name}={value}" if a.startswith(f"--{name}=") else a for a in args]


# Copied from mnist.tests.test_distributed.smoke_job
def smoke_job(worker_model_dir: str | None = None) -> dict:
    """The TFJob with case.toml's overrides; worker_model_dir: a model dir of the worker's own."""
    overrides = CASE.overrides_for(MANIFEST)
    if worker_model_dir:
        worker = ARGS.format("Worker")
        overrides[worker] = with_flag(overrides[worker], "model-dir", worker_model_dir)
    return manifests.apply_overrides(manifests.load(MANIFEST)[0], overrides)


# Copied from mnist.tests.test_distributed.smoke_trainjob
def smoke_trainjob(nodes: int | None = None) -> dict:
    """The TrainJob with case.toml's overrides, on `nodes` nodes (TF_NUM_NODES kept equal) if given."""
    overrides = CASE.overrides_for(TRAINJOB)
    if nodes is not None:
        overrides["spec.trainer.numNodes"] = nodes
        overrides["spec.trainer.env"] = [{"name": "TF_NUM_NODES", "value": str(nodes)}]
    return manifests.apply_overrides(manifests.load(TRAINJOB)[0], overrides)


# Copied from mnist.tests.test_distributed.run_trainjob
def run_trainjob(doc: dict, workdir: Path, **kwargs: object) -> jobs.JobResult:
    return jobs.run_job(
        doc, workdir=workdir, timeout=JOB_TIMEOUT, env=ONE_THREAD, runtimes=RUNTIMES, **kwargs
    )


# Copied from mnist.tests.test_distributed.printed_metrics
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
    cmd = [sys.executable, "-m", "imdb_sentiment.train_distributed", *flags]
    run = subprocess.run(
        [*cmd, f"--model-dir={tmp / 'model'}", f"--checkpoint-dir={tmp / 'checkpoints'}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "worker-0: one of 1 replicas, the chief" in run.stdout
    return json.loads((tmp / "model" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory: pytest.TempPathFactory) -> jobs.JobResult:
    """The legacy TFJob, Chief + 1 Worker; the worker gets a --model-dir of its own, to see it stay
    empty."""
    doc = smoke_job(worker_model_dir="/mnt/pvc/worker-model")
    workdir = tmp_path_factory.mktemp("tfjob")
    return jobs.run_job(doc, workdir=workdir, timeout=JOB_TIMEOUT, env=ONE_THREAD)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> jobs.JobResult:
    """The TrainJob on the case's TensorFlow runtime, two nodes, as case.toml shrinks it."""
    return run_trainjob(smoke_trainjob(), tmp_path_factory.mktemp("trainjob"))


def program_args(doc: dict) -> list[list[str]]:
    """The program's arguments in each replica (TFJob) or in the trainer (TrainJob)."""
    if doc["kind"] == "TrainJob":
        return [doc["spec"]["trainer"]["args"][len(PROGRAM) :]]
    specs = doc["spec"]["tfReplicaSpecs"].values()
    return [s["template"]["spec"]["containers"][0]["args"] for s in specs]


@pytest.mark.parametrize("manifest", [MANIFEST, TRAINJOB], ids=["tfjob", "trainjob"])
def test_the_smoke_jobs_are_the_cluster_jobs_but_for_their_sizes(manifest: Path) -> None:
    """What the tests below run is what a cluster runs: case.toml swaps the arguments only, for
    the sample, fewer epochs, smaller batches (640 reviews), reviews read up to 128 words (the
    sample's longest has 119) and more frequent checkpoints; every other flag is the cluster's,
    so the model and the checkpoints go where a cluster's would."""
    overrides = CASE.overrides_for(manifest)
    assert overrides and all(key.endswith(".args") for key in overrides), overrides
    cluster = manifests.load(manifest)[0]
    smoke = smoke_trainjob() if manifest == TRAINJOB else smoke_job()
    assert manifests.validate(smoke) == []
    sizes = ("--epochs=", "--checkpoint-steps=", "--data-dir=", "--batch-size=")
    sizes += ("--sequence-length=",)
    for before, after in zip(program_args(cluster), program_args(smoke), strict=True):
        assert "--sample" not in before and "--sample" in after  # the full data on a cluster
        assert [a for a in before if not a.startswith(sizes)] == [
            a for a in after if not a.startswith(sizes) and a != "--sample"
        ]
        assert "--sequence-length=128" in after
    if manifest == TRAINJOB:  # the runtime's entry point runs the args: the program stays
        assert smoke["spec"]["trainer"]["args"][: len(PROGRAM)] == PROGRAM


# Copied from mnist.tests.test_distributed.test_the_operator_finds_the_container_and_port_it_configures
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


# Copied from mnist.tests.test_distributed.test_runtime_and_trainjob_agree_on_the_node_count
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


# Copied from mnist.tests.test_distributed.tf_config_of_each_node
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


# Copied from mnist.tests.test_distributed.test_the_runtime_derives_the_tf_config_multiworker_strategy_expects
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


# --- two nodes: one model -----------------------------------------------------------------------


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
    # Both adapted the same vocabulary on their own, so a word has one id on both.
    vocabularies = dict(VOCABULARY.findall("\n".join(logs)))
    assert sorted(vocabularies) == ["worker-0", "worker-1"]
    assert vocabularies["worker-0"] == vocabularies["worker-1"], vocabularies

    # Both took every global step of every epoch, each on its own half of every batch ...
    ends = [epoch_ends(task, log) for task, log in (("worker-0", logs[0]), ("worker-1", logs[1]))]
    for node in ends:
        assert [epoch for epoch, *_ in node] == list(range(1, EPOCHS + 1)), ends
        assert all(reviews == BATCH // 2 for _, _, reviews, _ in node), ends
    for (_, loss0, _, own0), (_, loss1, _, own1) in zip(*ends, strict=True):
        # ... whose losses differ (other reviews: not one model trained twice on the same data)
        # while the loss both report is one number, the mean of the two halves': the all-reduce.
        assert own0 != own1, ends
        assert loss0 == loss1, ends
        assert loss0 == pytest.approx((own0 + own1) / 2, abs=2e-4), ends
    # The gradients were summed at every step: different reviews, the same weights to the bit.
    digests = dict(DIGEST.findall("\n".join(logs)))
    assert sorted(digests) == ["worker-0", "worker-1"]
    assert digests["worker-0"] == digests["worker-1"], digests

    volume = result.workdir / "volumes" / "models"
    written = sorted(p.name for p in (volume / "imdb").iterdir())
    assert written == ["calibration.json", "history.json", "metrics.json", "model.keras"]
    assert not list((volume / "checkpoints").rglob("ckpt-*"))  # deleted once training is done
    metrics = json.loads((volume / "imdb" / "metrics.json").read_text())
    assert metrics["workers"] == 2 and one_process["workers"] == 1
    assert metrics["test_accuracy"] >= FLOOR, metrics
    assert abs(metrics["test_accuracy"] - one_process["test_accuracy"]) <= CLOSE, (
        metrics,
        one_process,
    )
    # The chief prints the metric lines Katib reads: one set per epoch, then the final ones.
    printed = printed_metrics(logs[0])
    assert printed["epoch"] == list(range(1, EPOCHS + 1))
    for name in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert len(printed[name]) == EPOCHS, name
    for name in ("accuracy", "loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss"):
        assert printed[name][-1] == metrics[name], name
    print(
        f"trainjob, two nodes: test_accuracy={metrics['test_accuracy']:.4f} "
        f"(one process {one_process['test_accuracy']:.4f}) in {result.seconds:.1f}s"
    )


def test_the_trainjob_model_is_the_raw_text_model_the_servers_load(
    two_nodes: jobs.JobResult,
) -> None:
    from imdb_sentiment import data
    from imdb_sentiment.model import SentimentModel

    model_dir = two_nodes.workdir / "volumes" / "models" / "imdb"
    model = SentimentModel.load(model_dir)  # what serve.py loads
    assert model.kind == "bilstm"
    _, (test_x, test_y) = data.load_sample()
    probs = model.probabilities(test_x)  # raw review text in, calibrated probabilities out
    assert probs.shape == (len(test_x),) and np.all((probs > 0) & (probs < 1))
    metrics = json.loads((model_dir / "metrics.json").read_text())
    # The trained weights behind the vectorizer the chief adapted: its own test figures.
    accuracy = float(np.mean((probs >= 0.5) == test_y))
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=0.003)  # one review of 400
    assert metrics["test_ece"] < metrics["test_ece_uncalibrated"] + 0.02  # calibration fitted
    for name in ("accuracy", "loss", "val_accuracy", "val_loss", "train_reviews_per_second"):
        assert name in metrics, name  # train.py's names, so the pipeline reads either


def test_the_legacy_tfjob_trains_one_model_on_chief_and_worker(
    two_replicas: jobs.JobResult, one_process: dict
) -> None:
    result = two_replicas
    if not result.succeeded:
        result.raise_for_failure()
    assert result.reason == "TFJobSucceeded"
    chief, worker = result.replica("Chief").log(), result.replica("Worker").log()
    assert "chief-0: one of 2 replicas, the chief" in chief
    assert "worker-0: one of 2 replicas" in worker
    for task, log in (("chief-0", chief), ("worker-0", worker)):
        assert [e for e, *_ in epoch_ends(task, log)] == list(range(1, EPOCHS + 1)), task
    digests = dict(DIGEST.findall(chief + "\n" + worker))
    assert digests["chief-0"] == digests["worker-0"], digests

    volume = result.workdir / "volumes" / "models"  # what the harness mounts at /mnt/pvc
    assert (volume / "imdb" / "model.keras").is_file()
    assert not (volume / "worker-model").exists()  # only the chief writes the model
    assert not list((volume / "checkpoints").rglob("ckpt-*"))
    metrics = json.loads((volume / "imdb" / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["test_accuracy"] >= FLOOR, metrics
    assert abs(metrics["test_accuracy"] - one_process["test_accuracy"]) <= CLOSE
    assert printed_metrics(chief)["test_accuracy"][-1] == metrics["test_accuracy"]


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
    digests = dict(DIGEST.findall(chief.log() + "\n" + worker.log()))
    assert digests["worker-0"] == digests["worker-1"], digests  # still one model after it
    metrics = json.loads((volume / "imdb" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= FLOOR, metrics
    print(
        f"fault: node 1 exits {worker.exit_codes}, node 0 exits {chief.exit_codes}, resumed at "
        f"step {resumed['node-1'][-1]}, test_accuracy={metrics['test_accuracy']:.4f} "
        f"in {result.seconds:.1f}s"
    )
