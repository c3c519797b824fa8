"""Train the XGBoost income classifier across workers: the trainer of the TrainJob and XGBoostJob.

    python -m tests.harness run income_census/manifests/trainjob.yaml --smoke     # 2 nodes
    python -m income_census.train_distributed --sample --model-dir /tmp/ixd       # 1 worker

A readable diff of train.py; each change is marked `# distributed:`. `workers_from_env` reads
who this worker is from what its operator sets: Kubeflow Trainer v2's `xgboost-distributed`
runtime (a TrainJob) sets DMLC_TASK_ID, DMLC_NUM_WORKER, DMLC_TRACKER_URI and DMLC_TRACKER_PORT;
the Training Operator v1 (the legacy XGBoostJob) sets RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT. Rank 0 starts XGBoost's tracker at that address; every rank joins the collective
through it, trains on its own shard of the rows, and the histogram statistics are summed across
workers at every tree level, so the workers grow one model together. Only rank 0 writes the model.

Preprocessing is fitted on the whole training file by every rank (it is small and cheap, and
the one-hot columns are fixed in model.py), so all ranks see the same feature columns.

Rank 0 checkpoints the booster every --checkpoint-rounds rounds (atomically) into
--checkpoint-dir, a shared volume on a cluster; a restarted job resumes from it.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xgboost
from sklearn.pipeline import Pipeline

from income_census import data
from income_census.cli import fail, output_dir, positive_int
from income_census.model import add_model_arguments, build_pipeline
from income_census.train import evaluate, report, save

CHECKPOINT_FILE = "checkpoint.ubj"
# distributed: what each operator sets, in the order rank, world size, tracker host, tracker port.
TRAINJOB_ENV = ("DMLC_TASK_ID", "DMLC_NUM_WORKER", "DMLC_TRACKER_URI", "DMLC_TRACKER_PORT")
XGBOOSTJOB_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the Adult income classifier with XGBoost across workers."
    )
    data.add_data_arguments(parser)  # --sample, --dataset, --data-dir, --mirror
    parser.add_argument(
        "--model-dir",
        type=output_dir,
        default=Path("model"),
        help="where model.joblib and metrics.json go (default: model)",
    )
    add_model_arguments(parser)  # --model, --n-estimators, --max-depth, ..., --seed
    # distributed: where rank 0 checkpoints the booster, and how often.
    parser.add_argument(
        "--checkpoint-dir",
        type=output_dir,
        default=None,
        help="shared folder for checkpoints (default: <model-dir>/checkpoints)",
    )
    parser.add_argument(
        "--checkpoint-rounds",
        type=positive_int,
        default=10,
        help="boosting rounds between checkpoints (default: 10)",
    )
    args = parser.parse_args(argv)
    args.model = "xgboost"  # distributed: XGBoost's collective is what makes this distributed
    args.checkpoint_dir = args.checkpoint_dir or args.model_dir / "checkpoints"
    return args


class Checkpoint(xgboost.callback.TrainingCallback):
    """distributed: rank 0 saves the booster every `every` rounds, atomically (new)."""

    def __init__(self, path: Path, every: int) -> None:
        super().__init__()
        self.path, self.every = path, every

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        rounds = model.num_boosted_rounds()
        if xgboost.collective.get_rank() == 0 and rounds % self.every == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".part.ubj")
            model.save_model(tmp)
            tmp.replace(self.path)
        return False  # never stop training


@dataclass(frozen=True)
class Workers:
    """distributed: this worker's rank, how many there are, and where rank 0's tracker is (new)."""

    rank: int
    world_size: int
    tracker_host: str  # the name or address every worker dials
    tracker_port: int  # 0: any free port (one worker on its own)


def workers_from_env(env: Mapping[str, str]) -> Workers:
    """distributed: who this worker is, from the environment its operator sets (new).

    A TrainJob on Trainer v2's `xgboost-distributed` runtime: DMLC_TASK_ID (the pod's Job
    completion index), DMLC_NUM_WORKER, DMLC_TRACKER_URI (node 0's DNS name) and
    DMLC_TRACKER_PORT. A legacy XGBoostJob: RANK, WORLD_SIZE, MASTER_ADDR (the Master's Service)
    and MASTER_PORT. Neither: one worker, with its own tracker on 127.0.0.1. Raises ValueError
    with a one-line message when a set is incomplete or its numbers do not add up, or both are set.
    """
    given = [names for names in (TRAINJOB_ENV, XGBOOSTJOB_ENV) if any(n in env for n in names)]
    if not given:
        return Workers(rank=0, world_size=1, tracker_host="127.0.0.1", tracker_port=0)
    if len(given) > 1:
        raise ValueError(
            "both the TrainJob's DMLC_* and the XGBoostJob's RANK/WORLD_SIZE/MASTER_* variables "
            "are set; set one of the two"
        )
    names = given[0]
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise ValueError(f"{', '.join(missing)} not set: its operator sets {', '.join(names)}")
    rank_name, world_name, host_name, port_name = names
    numbers = {}
    for name in (rank_name, world_name, port_name):
        try:
            numbers[name] = int(env[name])
        except ValueError:
            raise ValueError(f"{name}={env[name]!r} is not a whole number") from None
    rank, world_size, port = numbers[rank_name], numbers[world_name], numbers[port_name]
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"{rank_name}={rank} is not a rank of {world_name}={world_size} workers")
    if not 0 < port < 65536:
        raise ValueError(f"{port_name}={port} is not a TCP port")
    return Workers(rank, world_size, env[host_name], port)


def tracker_listen_address(host: str) -> str:
    """distributed: where rank 0's tracker listens, given the name the workers dial (new).

    On a cluster that name is this pod's own (TrainJob: `<name>-node-0-0.<name>`, through
    JobSet's headless Service; XGBoostJob: the Master's Service), and it may not resolve until the
    Service has published the pod, so the tracker listens on every address of the pod, as
    Trainer's own XGBoost guide does. On one machine (127.0.0.1, localhost) only on loopback.
    """
    if host == "localhost":
        return "127.0.0.1"
    try:
        return host if ipaddress.ip_address(host).is_loopback else "0.0.0.0"
    except ValueError:  # a DNS name
        return "0.0.0.0"


def start_tracker(workers: Workers) -> xgboost.tracker.RabitTracker:
    """distributed: rank 0 runs the tracker every worker connects to first (new)."""
    tracker = xgboost.tracker.RabitTracker(
        host_ip=tracker_listen_address(workers.tracker_host),
        n_workers=workers.world_size,
        port=workers.tracker_port,
        sortby="task",  # ranks as the operator numbers them, not by connection order
    )
    tracker.start()
    return tracker


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    # distributed: who we are, from the env the TrainJob runtime or the XGBoostJob operator sets.
    try:
        workers = workers_from_env(os.environ)
    except ValueError as error:
        print(f"train_distributed: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    rank, world_size, host = workers.rank, workers.world_size, workers.tracker_host
    # distributed: rank 0 starts the tracker first, so the others do not wait for its data.
    tracker = start_tracker(workers) if rank == 0 else None
    port = int(tracker.worker_args()["dmlc_tracker_port"]) if tracker else workers.tracker_port
    try:
        (train_rows, train_labels), (test_rows, test_labels) = data.load_chosen(args)
    except (OSError, ValueError, data.DownloadError) as err:  # unreachable, corrupt, unreadable
        if tracker is not None:  # stopped now, or its finalizer prints a traceback at exit
            with contextlib.suppress(xgboost.core.XGBoostError):
                tracker.free()
        fail(f"{err} (check --dataset, --data-dir and --mirror, or use the committed --sample)")
    print(f"rank={rank} world_size={world_size} train={len(train_rows)} rows", flush=True)

    model = build_pipeline(args)
    preprocess, classifier = model.named_steps["preprocess"], model.named_steps["classifier"]
    # distributed: every rank fits the same preprocessing on all rows, then trains on its shard
    # (replaces model.fit(train_rows, train_labels)).
    features = preprocess.fit_transform(train_rows)
    shard = np.arange(rank, len(train_rows), world_size)

    # distributed: resume from rank 0's checkpoint when a replica was restarted.
    checkpoint = args.checkpoint_dir / CHECKPOINT_FILE
    booster, done = None, 0
    if checkpoint.exists():
        booster = xgboost.Booster(model_file=str(checkpoint))
        done = booster.num_boosted_rounds()
        print(f"resuming from {checkpoint} after {done} rounds", flush=True)
    classifier.set_params(
        n_estimators=max(args.n_estimators - done, 0),
        callbacks=[Checkpoint(checkpoint, args.checkpoint_rounds)],
    )

    start = time.perf_counter()
    with xgboost.collective.CommunicatorContext(
        dmlc_tracker_uri=host, dmlc_tracker_port=port, dmlc_task_id=str(rank)
    ):
        classifier.fit(features[shard], train_labels[shard], xgb_model=booster)
    train_seconds = time.perf_counter() - start
    if tracker is not None:
        tracker.wait_for()
    print(f"rank={rank} trained {classifier.get_booster().num_boosted_rounds()} rounds", flush=True)

    # distributed: only rank 0 evaluates and writes the model; it then drops the checkpoint so
    # the next job starts fresh.
    if rank != 0:
        return {}
    classifier.set_params(n_estimators=args.n_estimators, callbacks=None)
    trained = Pipeline([("preprocess", preprocess), ("classifier", classifier)])
    metrics = {**evaluate(trained, test_rows, test_labels), "train_seconds": train_seconds}
    metrics["workers"] = world_size
    save(trained, metrics, args.model_dir, train_rows)
    checkpoint.unlink(missing_ok=True)
    report(metrics)
    return metrics


if __name__ == "__main__":
    main()
