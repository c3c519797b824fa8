"""Train the IMDB BiLSTM on several workers with MultiWorkerMirroredStrategy (Keras 3 on TensorFlow).

    python -m imdb_sentiment.train_distributed --sample --model-dir /tmp/imdb   # one worker
    kubectl apply -f imdb_sentiment/manifests/trainjob.yaml   # two nodes on a cluster (Trainer v2)

A variant of imdb_sentiment/train.py's BiLSTM (`--model bilstm`): the same flags, `name=value`
metric lines, model.keras (raw review text in), calibration.json, metrics.json and history.json,
so `imdb_sentiment.model.SentimentModel.load` and the servers take its output as they take
train.py's; and `main()` takes the same steps. Each step that differs is marked `# train.py: ...`
with what it replaces, and what several workers need is in imdb_sentiment/distributed.py (the
strategy from TF_CONFIG, checkpoints, the training loop Keras 3 `Model.fit` cannot run under it).
--batch-size is the global batch, split across the workers. Only the chief writes the model.

The older Kubeflow sample this case replaces trained with `MirroredStrategy`, which mirrors a
model over the devices of one machine: each of its replicas trained a model of its own. Here the
replicas sum their gradients at every step and end with the same weights, to the bit; each prints
its digest (`<task>: weights digest ...`) to show it.

As in train.py, the flags, TF_CONFIG and the data are checked before TensorFlow is imported, so
a mistake gets its one-line answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from imdb_sentiment import data
from imdb_sentiment.cli import fail, non_negative_int, output_dir, positive_int, seed
from imdb_sentiment.model import CALIBRATION_FILE, add_model_arguments
from imdb_sentiment.train import evaluate, report, save


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the IMDB BiLSTM (Keras 3, MultiWorkerMirroredStrategy from TF_CONFIG)."
    )
    data.add_data_arguments(parser)  # --sample, --dataset, --data-dir, --url
    parser.add_argument(
        "--model-dir",
        type=output_dir,
        default=Path("model"),
        help="where the model, calibration.json and metrics.json go (default: model)",
    )
    # train.py: --model bilstm|tfidf. Here the BiLSTM only: the baseline has no steps to share.
    parser.add_argument(
        "--epochs", type=positive_int, default=5, help="passes over the data (default: 5)"
    )
    # train.py: "reviews per step" of one process; here the global batch, split across workers.
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="reviews per step, all workers together: the global batch (default: 64)",
    )
    add_model_arguments(parser)  # --max-tokens, --sequence-length, --embedding-dim, ...
    parser.add_argument("--seed", type=seed, default=42, help="random seed (default: 42)")
    # train.py has no checkpoints: these two are what a restarted replica resumes from.
    parser.add_argument(
        "--checkpoint-dir",
        type=output_dir,
        default=Path("checkpoints"),
        help="training checkpoints, on storage every replica sees (default: checkpoints)",
    )
    parser.add_argument(
        "--checkpoint-steps",
        type=non_negative_int,
        default=0,
        help="also checkpoint every N steps within an epoch; 0: only after each epoch (default: 0)",
    )
    args = parser.parse_args(argv)
    # train.py has no cluster: check the one TF_CONFIG describes before any replica waits on it.
    problem = cluster_problem(os.environ.get("TF_CONFIG"), args.batch_size)
    if problem:
        parser.error(problem)
    return args


# Copied from mnist.train_distributed.cluster_problem
def cluster_problem(tf_config: str | None, batch_size: int) -> str | None:
    """What is wrong with TF_CONFIG for this training, or None (no TF_CONFIG: one worker)."""
    if not tf_config:
        return None
    try:
        config = json.loads(tf_config)
        cluster, task = config["cluster"], config["task"]
        hosts = cluster[task["type"]]
        if not 0 <= int(task["index"]) < len(hosts):
            return f"TF_CONFIG task {task} is not in its cluster {cluster}"
    except (ValueError, TypeError, KeyError) as err:
        return f"TF_CONFIG is not a cluster and a task ({type(err).__name__}: {err}): {tf_config}"
    workers = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
    if batch_size % workers:
        return f"--batch-size {batch_size} does not split evenly over the {workers} workers"
    return None


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    try:
        (train_x, train_y), (test_x, test_y) = data.load_chosen(args)
    except (OSError, ValueError, data.DownloadError) as err:  # unreachable, corrupt, unreadable
        fail(f"{err} (check --dataset, --data-dir and --url, or use the committed --sample)")
    val_i, fit_i = data.validation_split(len(train_x), args.seed)
    fit = ([train_x[i] for i in fit_i], train_y[fit_i])
    val = ([train_x[i] for i in val_i], train_y[val_i])
    # train.py lets Keras take a last, smaller batch; here every step needs a whole global batch.
    if len(fit_i) < args.batch_size:
        fail(f"--batch-size {args.batch_size} exceeds the {len(fit_i)} training reviews")
    import keras  # only now: see the module docstring
    import tensorflow as tf

    from imdb_sentiment.distributed import (
        Checkpoints,
        check_in_step,
        check_same_vocabulary,
        fit_model,
        probabilities,
        start_strategy,
        vocabulary_digest,
        weights_digest,
    )
    from imdb_sentiment.model import build_bilstm, build_vectorizer, export_bilstm

    # train.py: one process. The strategy comes first: it starts this replica's gRPC server and
    # waits for every replica in TF_CONFIG before TensorFlow does anything else.
    strategy, task, is_chief = start_strategy()
    keras.utils.set_random_seed(args.seed)  # Python, NumPy and TensorFlow in one call
    print(f"train={len(fit_i)} validation={len(val_i)} test={len(test_x)} reviews", flush=True)

    # train.py: the same vocabulary from the same reviews, adapted in train_bilstm. Here every
    # replica adapts its own, outside the strategy's scope (a lookup table, nothing to train or
    # mirror); the replicas check they agree, since the model only ever sees word ids.
    vectorizer = build_vectorizer(args.max_tokens, args.sequence_length)
    vectorizer.adapt(np.asarray(fit[0], dtype=object), batch_size=1024)
    vocabulary = vectorizer.get_vocabulary()
    digest = vocabulary_digest(vocabulary)
    print(
        f"vocabulary={len(vocabulary)} words (padding and out-of-vocabulary included)", flush=True
    )
    print(f"{task}: vocabulary digest {digest}", flush=True)
    check_same_vocabulary(strategy, digest, task)
    word_ids = {name: np.asarray(vectorizer(np.asarray(texts, dtype=object))) for name, texts in
                (("fit", fit[0]), ("val", val[0]), ("test", test_x))}  # fmt: skip

    # train.py: build_bilstm. Here under the strategy's scope: every variable is mirrored.
    with strategy.scope():
        classifier = build_bilstm(
            len(vocabulary), args.embedding_dim, args.lstm_units, args.learning_rate
        )
        classifier.optimizer.build(classifier.trainable_variables)  # its slots must be restorable
        step = tf.Variable(0, dtype=tf.int64, trainable=False)  # global steps done
    # train.py has no checkpoints: resume where the chief's last checkpoint left off.
    checkpoints = Checkpoints(classifier, step, args.checkpoint_dir, task, is_chief)
    checkpoints.resume()
    check_in_step(strategy, step, task)
    first_step = int(step.numpy())
    start = time.perf_counter()
    # train.py: classifier.fit, which cannot run under this strategy.
    history = fit_model(
        strategy,
        classifier,
        step,
        checkpoints,
        (word_ids["fit"], fit[1]),
        (word_ids["val"], val[1]),
        args,
    )
    train_seconds = time.perf_counter() - start
    last = {name: values[-1] for name, values in history.items()}
    # train.py: raw_probabilities of the exported model on the texts. Here of the classifier on
    # the word ids, the same numbers (the exported model runs this vectorizer first) without
    # Keras' predict, which would try to distribute itself.
    calibration, test_metrics = evaluate(
        probabilities(classifier, word_ids["val"]),
        val[1],
        probabilities(classifier, word_ids["test"]),
        test_y,
    )

    metrics = last | test_metrics
    metrics |= {
        "train_seconds": train_seconds,
        # train.py: epochs x reviews. Here the steps this run took (a resumed run takes fewer),
        # by every worker together.
        "train_reviews_per_second": (int(step.numpy()) - first_step)
        * args.batch_size
        / train_seconds,
        "workers": strategy.num_replicas_in_sync,
    }
    # train.py: one model. Here every replica holds a copy; after the last all-reduce the copies
    # are the same to the bit, which the digest in each replica's log shows.
    print(f"{task}: weights digest {weights_digest(classifier)}", flush=True)
    # train.py: always writes. Here only the chief does; the others leave --model-dir alone.
    # history.json holds the epochs this run trained (after a resume, those since it).
    if is_chief:
        save(export_bilstm(vectorizer, classifier), args.model_dir, "bilstm")
        calibration.save(args.model_dir)
        (args.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (args.model_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
        print(f"wrote bilstm model and {CALIBRATION_FILE} to {args.model_dir}", flush=True)
    checkpoints.remove()  # train.py has none
    report({k: test_metrics[k] for k in ("test_accuracy", "test_loss", "test_ece")})
    return metrics


if __name__ == "__main__":
    main()
