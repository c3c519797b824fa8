"""Train the deep collaborative filter in one process and measure it against two baselines.

    python -m recommender.train --sample --model-dir /tmp/rec          # committed sample, ~20 s
    python -m recommender.train --model-dir /tmp/rec                   # the book's transactions
    python -m recommender.train --dataset movielens --model-dir /tmp/ml   # MovieLens-100k
    python -m recommender.train --dataset movielens-recbole --n-factors 128 --batch-size 512 --epochs 40 --model-dir /tmp/ml
        # the same ratings from the recbole wheel on PyPI (a mirror of PyPI is all it needs)

The interactions are split per user 8:1:1 (data.split_by_user, RecBole's quick-start split).
The model trains on the first part with negative sampling (model.py); after every epoch its
hit rate@10 and NDCG@10 on the validation part are measured with full ranking (metrics.py),
and val_ndcg_at_10 is what Katib maximises. The test part is touched once, at the end, for the
model and for the popularity and BPR baselines (baselines.py), all on the same split, with the
items a user has in train or validation left out of their ranking.

Metrics go to stdout as `name=value` lines, one set per epoch and a final set, which is what
Katib's StdOut metrics collector reads (its default filter takes names of letters, digits, `_`
and `-`, so `ndcg@10` is spelled `ndcg_at_10`), and the final ones to metrics.json in
--model-dir beside model.keras and mappings.json (the raw customer and product ids of the
model's indices); history.json keeps every epoch's values for learning curves.

The flags and the data are checked before TensorFlow is imported (about 10 s and a screen of
notices), so a mistake gets its one-line answer at once.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recommender import baselines, data
from recommender.cli import fail, output_dir, positive_int, seed
from recommender.export import save_purchases
from recommender.metrics import evaluate
from recommender.model import KERAS_FILE, add_model_arguments

if TYPE_CHECKING:
    import keras

K = 10  # the length of the recommendation list the metrics judge


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the deep collaborative filter (Keras 3, one process) and measure it"
        " against the popularity and BPR baselines."
    )
    data.add_data_arguments(parser)  # --sample, --dataset, --data-file, --data-dir, --url
    parser.add_argument(
        "--model-dir",
        type=output_dir,
        default=Path("model"),
        help="where model.keras, mappings.json and metrics.json go (default: model)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=20,
        help="passes over the training data (default: 20)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="examples (purchases and negatives) per step (default: 256)",
    )
    add_model_arguments(parser)  # --n-factors, --dropout, --learning-rate, --negatives
    parser.add_argument("--seed", type=seed, default=42, help="random seed (default: 42)")
    return parser.parse_args(argv)


def report(metrics: dict[str, float]) -> None:
    """Print metrics as name=value lines; repr keeps every digit, so stdout and JSON agree."""
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)


def named(prefix: str, figures: dict[str, float]) -> dict[str, float]:
    """{"hit_rate@10": x} -> {"<prefix>_hit_rate_at_10": x}, names Katib's filter accepts."""
    return {f"{prefix}_{name.replace('@', '_at_')}": float(v) for name, v in figures.items()}


def split(inter: data.Interactions, seed: int) -> tuple[data.Interactions, ...]:
    """Train, validation and test; fails with one line when a part would be empty."""
    parts = data.split_by_user(inter, seed)
    for name, part in zip(("train", "validation", "test"), parts, strict=True):
        if len(part) == 0:
            fail(
                f"the {name} split is empty ({len(inter)} interactions of {inter.n_users} users):"
                " users need 3 interactions or more to reach every split; give more data"
            )
    return parts


def train(
    args: argparse.Namespace, fit: data.Interactions, val: data.Interactions
) -> tuple[keras.Model, dict[str, list[float]], float, int]:
    """(the model, its history, seconds spent sampling and fitting, examples it was fitted on).

    Every epoch draws new negatives and is one call of Model.fit; validation is measured between
    them with full ranking, which Keras' own validation (one loss per pair) cannot do.
    """
    import keras

    from recommender.model import ItemScorer, build_model, training_examples

    keras.utils.set_random_seed(args.seed)  # Python, NumPy and TensorFlow in one call
    rng = np.random.default_rng(args.seed)  # the negatives of every epoch
    model = build_model(fit.n_users, fit.n_items, args.n_factors, args.dropout, args.learning_rate)
    history: dict[str, list[float]] = {}
    seconds, examples = 0.0, 0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        x, y = training_examples(fit, args.negatives, rng)
        logs = model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0).history
        seconds += time.perf_counter() - start
        examples += len(y)
        epoch_metrics = {"loss": float(logs["loss"][-1])}
        epoch_metrics |= named("val", evaluate(ItemScorer(model), fit, val, K))
        report({"epoch": epoch, **epoch_metrics})
        for name, value in epoch_metrics.items():
            history.setdefault(name, []).append(value)
    return model, history, seconds, examples


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    try:
        inter = data.load_chosen(args)
    except (OSError, data.DataError, data.DownloadError) as err:  # unreachable, corrupt, unreadable
        fail(f"{err} (check --dataset, --data-file, --data-dir and --url, or use --sample)")
    fit, val, test = split(inter, args.seed)
    print(
        f"users={inter.n_users} items={inter.n_items} interactions: train={len(fit)}"
        f" validation={len(val)} test={len(test)}",
        flush=True,
    )

    start = time.perf_counter()
    model, history, fit_seconds, examples = train(args, fit, val)
    train_seconds = time.perf_counter() - start

    from recommender.model import ItemScorer

    metrics = {name: values[-1] for name, values in history.items()}
    # The test split, once, for the model and both baselines; train and validation are seen.
    scorers = {
        "test": ItemScorer(model),
        "popularity_test": baselines.popularity(fit),
        "bpr_test": baselines.bpr(fit, seed=args.seed),
    }
    for prefix, score_fn in scorers.items():
        metrics |= named(prefix, evaluate(score_fn, fit, test, K, also_seen=val))
    metrics |= {
        "train_seconds": train_seconds,
        "train_examples_per_second": examples / fit_seconds,
    }
    args.model_dir.mkdir(parents=True, exist_ok=True)
    model.save(args.model_dir / KERAS_FILE)
    data.IdMapping.of(inter).save(args.model_dir)
    save_purchases(inter, args.model_dir)  # what the server must not offer again
    (args.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.model_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    print(
        f"wrote {KERAS_FILE}, {data.MAPPINGS}, purchases.npz and metrics.json to {args.model_dir}",
        flush=True,
    )
    report(metrics)
    return metrics


if __name__ == "__main__":
    main()
