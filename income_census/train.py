"""Train the income classifier in one process: preprocessing and model as one sklearn Pipeline.

    python -m income_census.train --sample --model-dir /tmp/income            # RandomForest, ~2 s
    python -m income_census.train --sample --model xgboost --model-dir /tmp/ix
    python -m income_census.train --model-dir /tmp/income-full                # full Adult

Trains on adult.data (or the sample's part of it), tests on adult.test. Metrics go to stdout as
`name=value` lines, which is what Katib's StdOut metrics collector reads, and to metrics.json in
--model-dir beside model.joblib, the whole Pipeline (it takes raw rows), and background.csv,
1,000 training rows that the anchor explainer samples from.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import Pipeline

from income_census import data
from income_census.cli import fail, output_dir
from income_census.explain import background_rows
from income_census.model import add_model_arguments, build_pipeline

MODEL_FILE = "model.joblib"
BACKGROUND_FILE = "background.csv"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the Adult income classifier (one process).")
    data.add_data_arguments(parser)  # --sample, --dataset, --data-dir, --mirror
    parser.add_argument(
        "--model-dir",
        type=output_dir,
        default=Path("model"),
        help="where model.joblib and metrics.json go (default: model)",
    )
    add_model_arguments(parser)  # --model, --n-estimators, --max-depth, ..., --seed
    return parser.parse_args(argv)


def report(metrics: dict[str, float]) -> None:
    """Print metrics as name=value lines; repr keeps every digit, so stdout and JSON agree."""
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)


def evaluate(model: Pipeline, rows, labels: np.ndarray) -> dict[str, float]:
    """Test metrics, with the majority-class baseline a model must beat to be worth anything."""
    probabilities = model.predict_proba(rows)
    # argmax, as model.predict and the servers decide: a 0.5/0.5 tie (common with 50 trees)
    # goes to the first class, <=50K.
    predicted = probabilities.argmax(axis=1)
    majority = max(labels.mean(), 1 - labels.mean())
    return {
        "test_accuracy": float(accuracy_score(labels, predicted)),
        "test_f1": float(f1_score(labels, predicted)),
        "test_auc": float(roc_auc_score(labels, probabilities[:, 1])),
        "baseline_accuracy": float(majority),
    }


def save(model: Pipeline, metrics: dict[str, float], model_dir: Path, train_rows) -> None:
    """model.joblib, metrics.json and the explainer's background.csv into model_dir."""
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / MODEL_FILE)
    background_rows(train_rows).to_csv(model_dir / BACKGROUND_FILE, index=False, na_rep="?")
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    try:
        (train_rows, train_labels), (test_rows, test_labels) = data.load_chosen(args)
    except (OSError, ValueError, data.DownloadError) as err:  # unreachable, corrupt, unreadable
        fail(f"{err} (check --dataset, --data-dir and --mirror, or use the committed --sample)")
    print(f"train={len(train_rows)} test={len(test_rows)} rows, model={args.model}", flush=True)

    model = build_pipeline(args)
    start = time.perf_counter()
    model.fit(train_rows, train_labels)
    train_seconds = time.perf_counter() - start

    metrics = {**evaluate(model, test_rows, test_labels), "train_seconds": train_seconds}
    save(model, metrics, args.model_dir, train_rows)
    report(metrics)
    return metrics


if __name__ == "__main__":
    main()
