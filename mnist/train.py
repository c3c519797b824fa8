"""Train the MNIST CNN in one process (Keras 3 on TensorFlow).

    python -m mnist.train --sample --epochs 3 --model-dir /tmp/mnist   # committed sample, ~30 s
    python -m mnist.train --model-dir /tmp/mnist                       # full MNIST, downloaded once

Metrics go to stdout as `name=value` lines, one set per epoch and a final set, which is what
Katib's StdOut metrics collector reads, and the final ones to metrics.json in --model-dir beside
the exported model.keras; history.json keeps every epoch's values for learning curves.

The flags and the data are checked before TensorFlow is imported (about 10 s and a screen of
notices), so a mistake gets its one-line answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mnist import data
from mnist.cli import fail, output_dir, positive_int, seed
from mnist.model import add_model_arguments, build_keras_model

if TYPE_CHECKING:
    import keras


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the MNIST CNN (Keras 3, one process).")
    data.add_data_arguments(parser)  # --sample, --dataset, --data-dir, --mirror
    parser.add_argument(
        "--model-dir",
        type=output_dir,
        default=Path("model"),
        help="where model.keras and metrics.json go (default: model)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=5, help="passes over the training data (default: 5)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="images per step (default: 32)"
    )
    add_model_arguments(parser)  # --learning-rate, --num-layers, --optimizer
    parser.add_argument("--seed", type=seed, default=42, help="random seed (default: 42)")
    return parser.parse_args(argv)


def report(metrics: dict[str, float]) -> None:
    """Print metrics as name=value lines; repr keeps every digit, so stdout and JSON agree."""
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)


def progress_bar() -> bool:
    """Keras' progress bar on a terminal; one line per epoch in a log, a pod, a notebook or
    under kfp.local (a bar redrawn there becomes one line per update)."""
    return sys.stdout.isatty()


def print_metrics() -> keras.callbacks.Callback:
    """After each epoch, the Keras logs as name=value lines for Katib."""
    import keras

    def on_epoch_end(epoch: int, logs: dict | None = None) -> None:
        if progress_bar():
            print(flush=True)  # the progress bar has not ended its line yet
        report({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    try:
        (train_x, train_y), (test_x, test_y) = data.load_chosen(args)
    except (OSError, ValueError, data.DownloadError) as err:  # unreachable, corrupt, unreadable
        fail(f"{err} (check --dataset, --data-dir and --mirror, or use the committed --sample)")
    import keras  # only now: see the module docstring

    keras.utils.set_random_seed(args.seed)  # Python, NumPy and TensorFlow in one call
    val, fit = data.validation_split(len(train_x), args.seed)
    print(f"train={len(fit)} validation={len(val)} test={len(test_x)} images", flush=True)

    model = build_keras_model(args.learning_rate, args.num_layers, args.optimizer)
    start = time.perf_counter()
    history = model.fit(
        data.normalize(train_x[fit]),
        train_y[fit],
        validation_data=(data.normalize(train_x[val]), train_y[val]),
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=[print_metrics()],
        verbose=1 if progress_bar() else 2,
    )
    train_seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(data.normalize(test_x), test_y, verbose=0)

    metrics = {name: float(values[-1]) for name, values in history.history.items()}
    metrics |= {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "train_seconds": train_seconds,
    }
    args.model_dir.mkdir(parents=True, exist_ok=True)
    model.save(args.model_dir / "model.keras")
    (args.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    history_json = {name: [float(v) for v in values] for name, values in history.history.items()}
    (args.model_dir / "history.json").write_text(json.dumps(history_json, indent=2) + "\n")
    report({k: metrics[k] for k in ("test_accuracy", "test_loss")})
    return metrics


if __name__ == "__main__":
    main()
