"""Train a review classifier in one process: the BiLSTM (Keras 3) or the TF-IDF baseline.

    python -m imdb_sentiment.train --sample --model-dir /tmp/imdb                 # BiLSTM, ~30 s
    python -m imdb_sentiment.train --sample --model tfidf --model-dir /tmp/tfidf  # baseline, ~2 s
    python -m imdb_sentiment.train --model-dir /tmp/imdb     # the full data set, downloaded once

Both hold out VALIDATION_FRACTION of the training reviews: the BiLSTM's val_accuracy (what Katib
maximises) is measured on them, and so is the Platt scaling that calibrates each model's
probabilities (imdb_sentiment/model.py). The test split is touched once, at the end.

Metrics go to stdout as `name=value` lines, one set per epoch and a final set, which is what
Katib's StdOut metrics collector reads, and the final ones to metrics.json in --model-dir beside
the model (model.keras, or model.joblib for the baseline) and calibration.json; history.json
keeps every epoch's values for learning curves.

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

import numpy as np

from imdb_sentiment import data
from imdb_sentiment.cli import fail, output_dir, positive_float, positive_int, seed
from imdb_sentiment.model import (
    CALIBRATION_FILE,
    KERAS_FILE,
    MODELS,
    SKLEARN_FILE,
    Calibration,
    KerasClassifier,
    SklearnClassifier,
    add_model_arguments,
    expected_calibration_error,
    log_loss,
)

if TYPE_CHECKING:
    import keras


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train an IMDB review classifier: the BiLSTM (Keras 3) or TF-IDF + logistic"
        " regression (scikit-learn), in one process."
    )
    data.add_data_arguments(parser)  # --sample, --dataset, --data-dir, --url
    parser.add_argument(
        "--model-dir",
        type=output_dir,
        default=Path("model"),
        help="where the model, calibration.json and metrics.json go (default: model)",
    )
    parser.add_argument(
        "--model", choices=MODELS, default="bilstm", help="which classifier (default: bilstm)"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=5, help="BiLSTM: passes over the data (default: 5)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="BiLSTM: reviews per step (default: 64)"
    )
    add_model_arguments(parser)  # --max-tokens, --sequence-length, --embedding-dim, ...
    parser.add_argument(
        "--tfidf-c",
        type=positive_float,
        default=10.0,
        help="TF-IDF baseline: inverse regularisation of the logistic regression (default: 10)",
    )
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


def train_bilstm(args, fit: data.Split, val: data.Split) -> tuple[object, dict, dict]:
    """(the exported raw-text model, its history, the validation metrics of the last epoch)."""
    import keras

    from imdb_sentiment.model import build_bilstm, build_vectorizer, export_bilstm

    keras.utils.set_random_seed(args.seed)  # Python, NumPy and TensorFlow in one call
    # The vocabulary comes from the reviews the model fits, never from validation or test ones.
    vectorizer = build_vectorizer(args.max_tokens, args.sequence_length)
    vectorizer.adapt(np.asarray(fit[0], dtype=object), batch_size=1024)
    vocabulary = len(vectorizer.get_vocabulary())
    print(f"vocabulary={vocabulary} words (padding and out-of-vocabulary included)", flush=True)
    word_ids = {name: vectorizer(np.asarray(t, dtype=object)) for name, (t, _) in
                (("fit", fit), ("val", val))}  # fmt: skip
    classifier = build_bilstm(vocabulary, args.embedding_dim, args.lstm_units, args.learning_rate)
    history = classifier.fit(
        word_ids["fit"],
        fit[1],
        validation_data=(word_ids["val"], val[1]),
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=[print_metrics()],
        verbose=1 if progress_bar() else 2,
    )
    curves = {name: [float(v) for v in values] for name, values in history.history.items()}
    last = {name: values[-1] for name, values in curves.items()}
    return export_bilstm(vectorizer, classifier), curves, last


def train_tfidf(args, fit: data.Split, val: data.Split) -> tuple[object, dict, dict]:
    """(the fitted scikit-learn Pipeline, its one-step history, its validation metrics)."""
    from imdb_sentiment.model import build_tfidf

    pipeline = build_tfidf(args.tfidf_c, seed=args.seed).fit(fit[0], fit[1])
    print(f"vocabulary={len(pipeline['tfidf'].vocabulary_)} 1- and 2-grams", flush=True)
    fit_p, val_p = pipeline.predict_proba(fit[0])[:, 1], pipeline.predict_proba(val[0])[:, 1]
    last = {
        "accuracy": float(np.mean((fit_p >= 0.5) == fit[1])),
        "loss": log_loss(fit_p, fit[1]),
        "val_accuracy": float(np.mean((val_p >= 0.5) == val[1])),
        "val_loss": log_loss(val_p, val[1]),
    }
    report({"epoch": 1, **last})  # one pass, reported as the BiLSTM reports an epoch
    return pipeline, {k: [v] for k, v in last.items()}, last


def raw_probabilities(model: object, texts: list[str]) -> np.ndarray:
    """P(positive) before calibration, float64 (N,), for either kind of model."""
    wrapper = SklearnClassifier if hasattr(model, "predict_proba") else KerasClassifier
    return wrapper(model).raw_probabilities(texts)


def evaluate(
    raw_val: np.ndarray, val_labels: np.ndarray, raw_test: np.ndarray, test_labels: np.ndarray
) -> tuple[Calibration, dict[str, float]]:
    """Fit the calibration on validation, and measure the test split before and after it."""
    calibration = Calibration.fit(raw_val, val_labels)
    test = calibration(raw_test)
    metrics = {
        "test_accuracy": float(np.mean((test >= 0.5) == test_labels)),
        "test_loss": log_loss(test, test_labels),
        "test_ece": expected_calibration_error(test, test_labels),
        "test_ece_uncalibrated": expected_calibration_error(raw_test, test_labels),
        "test_loss_uncalibrated": log_loss(raw_test, test_labels),
    }
    return calibration, metrics


def save(model: object, folder: Path, kind: str) -> None:
    """The model file of its kind; a stale model of the other kind is removed, so a server
    reading the folder cannot load the wrong one."""
    folder.mkdir(parents=True, exist_ok=True)
    keep, drop = (KERAS_FILE, SKLEARN_FILE) if kind == "bilstm" else (SKLEARN_FILE, KERAS_FILE)
    (folder / drop).unlink(missing_ok=True)
    if kind == "bilstm":
        model.save(folder / keep)
    else:
        import joblib

        joblib.dump(model, folder / keep)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    try:
        (train_x, train_y), (test_x, test_y) = data.load_chosen(args)
    except (OSError, ValueError, data.DownloadError) as err:  # unreachable, corrupt, unreadable
        fail(f"{err} (check --dataset, --data-dir and --url, or use the committed --sample)")
    val_i, fit_i = data.validation_split(len(train_x), args.seed)
    fit = ([train_x[i] for i in fit_i], train_y[fit_i])
    val = ([train_x[i] for i in val_i], train_y[val_i])
    print(f"train={len(fit_i)} validation={len(val_i)} test={len(test_x)} reviews", flush=True)

    start = time.perf_counter()
    trainer = train_bilstm if args.model == "bilstm" else train_tfidf
    model, history, last = trainer(args, fit, val)
    train_seconds = time.perf_counter() - start
    epochs = args.epochs if args.model == "bilstm" else 1
    calibration, test_metrics = evaluate(
        raw_probabilities(model, val[0]), val[1], raw_probabilities(model, test_x), test_y
    )

    metrics = last | test_metrics
    metrics |= {
        "train_seconds": train_seconds,
        "train_reviews_per_second": len(fit_i) * epochs / train_seconds,
    }
    save(model, args.model_dir, args.model)
    calibration.save(args.model_dir)
    (args.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.model_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    print(f"wrote {args.model} model and {CALIBRATION_FILE} to {args.model_dir}", flush=True)
    report({k: test_metrics[k] for k in ("test_accuracy", "test_loss", "test_ece")})
    return metrics


if __name__ == "__main__":
    main()
