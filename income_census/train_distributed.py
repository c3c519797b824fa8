"""Train the XGBoost income classifier across workers: the XGBoostJob's trainer.

    python -m tests.harness run income_census/manifests/xgboostjob.yaml --smoke   # 2 workers
    python -m income_census.train_distributed --sample --model-dir /tmp/ixd       # 1 worker

A readable diff of train.py; each change is marked `# distributed:`. The XGBoostJob operator sets
MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK in every replica (the Master is rank 0). Rank 0
starts XGBoost's tracker on MASTER_PORT; every rank joins the collective through it, trains on
its own shard of the rows, and the histogram statistics are summed across workers at every tree
level, so the workers grow one model together. Only rank 0 writes the model.

Preprocessing is fitted on the whole training file by every rank (it is small and cheap, and
the one-hot columns are fixed in model.py), so all ranks see the same feature columns.

Rank 0 checkpoints the booster every --checkpoint-rounds rounds (atomically) into
--checkpoint-dir, a shared volume on a cluster; a restarted job resumes from it.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import xgboost
from sklearn.pipeline import Pipeline

from income_census import data
from income_census.model import add_model_arguments, build_pipeline
from income_census.train import evaluate, report, save

CHECKPOINT_FILE = "checkpoint.ubj"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the Adult income classifier with XGBoost across workers."
    )
    data.add_data_arguments(parser)  # --sample, --dataset, --data-dir, --mirror
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path("model"),
        help="where model.joblib and metrics.json go (default: model)",
    )
    add_model_arguments(parser)  # --model, --n-estimators, --max-depth, ..., --seed
    # distributed: where rank 0 checkpoints the booster, and how often.
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="shared folder for checkpoints (default: <model-dir>/checkpoints)",
    )
    parser.add_argument(
        "--checkpoint-rounds",
        type=int,
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


def start_tracker(host: str, port: int, world_size: int) -> xgboost.tracker.RabitTracker:
    """distributed: rank 0 runs the tracker every worker connects to first (new)."""
    tracker = xgboost.tracker.RabitTracker(
        host_ip=host,
        n_workers=world_size,
        port=port,
        sortby="task",  # ranks as the operator numbers them, not by connection order
    )
    tracker.start()
    return tracker


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    # distributed: who we are, from the env the XGBoostJob operator sets.
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    host, port = (
        os.environ.get("MASTER_ADDR", "127.0.0.1"),
        int(os.environ.get("MASTER_PORT", "9991")),
    )
    # distributed: rank 0 starts the tracker first, so the others do not wait for its data.
    tracker = start_tracker(host, port, world_size) if rank == 0 else None
    (train_rows, train_labels), (test_rows, test_labels) = data.load_chosen(args)
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
