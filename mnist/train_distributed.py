"""Train the MNIST CNN on several workers with MultiWorkerMirroredStrategy (Keras 3 on TensorFlow).

    python -m mnist.train_distributed --sample --epochs 3 --model-dir /tmp/mnist   # one worker
    kubectl apply -f mnist/manifests/trainjob.yaml     # two nodes on a cluster (Trainer v2)

A variant of mnist/train.py: the same flags, `name=value` metric lines, model.keras and
metrics.json, and `main()` takes the same steps; each step that differs is marked
`# train.py: ...` with what it replaces, and what several workers need is in mnist/distributed.py
(the strategy from TF_CONFIG, checkpoints, the training loop Keras 3 `Model.fit` cannot run under
it). --batch-size is the global batch, split across the workers. Only the chief writes the model.

As in train.py, the flags, TF_CONFIG and the data are checked before TensorFlow is imported, so
a mistake gets its one-line answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from mnist import data
from mnist.cli import fail, non_negative_int, output_dir, positive_int, seed
from mnist.model import add_model_arguments, build_keras_model
from mnist.train import report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the MNIST CNN (Keras 3, MultiWorkerMirroredStrategy from TF_CONFIG)."
    )
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
    # train.py: "images per step" of one process; here the global batch, split across workers.
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="images per step, all workers together: the global batch (default: 32)",
    )
    add_model_arguments(parser)  # --learning-rate, --num-layers, --optimizer
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
        fail(f"{err} (check --dataset, --data-dir and --mirror, or use the committed --sample)")
    val, fit = data.validation_split(len(train_x), args.seed)
    if len(fit) < args.batch_size:
        fail(f"--batch-size {args.batch_size} exceeds the {len(fit)} training images")
    import keras  # only now: see the module docstring
    import tensorflow as tf

    from mnist.distributed import (
        Checkpoints,
        check_in_step,
        evaluate,
        fit_model,
        start_strategy,
        weights_digest,
    )

    # train.py: one process. The strategy comes first: it starts this replica's gRPC server and
    # waits for every replica in TF_CONFIG before TensorFlow does anything else.
    strategy, task, is_chief = start_strategy()
    keras.utils.set_random_seed(args.seed)  # Python, NumPy and TensorFlow in one call
    print(f"train={len(fit)} validation={len(val)} test={len(test_x)} images", flush=True)

    # train.py: build_keras_model. Here under the strategy's scope: every variable is mirrored.
    with strategy.scope():
        model = build_keras_model(args.learning_rate, args.num_layers, args.optimizer)
        model.optimizer.build(model.trainable_variables)  # its slots must exist to be restored
        step = tf.Variable(0, dtype=tf.int64, trainable=False)  # global steps done
    # train.py has no checkpoints: resume where the chief's last checkpoint left off.
    checkpoints = Checkpoints(model, step, args.checkpoint_dir, task, is_chief)
    checkpoints.resume()
    check_in_step(strategy, step, task)
    start = time.perf_counter()
    # train.py: model.fit, which cannot run under this strategy.
    history = fit_model(
        strategy,
        model,
        step,
        checkpoints,
        (data.normalize(train_x[fit]), train_y[fit]),
        (data.normalize(train_x[val]), train_y[val]),
        args,
    )
    train_seconds = time.perf_counter() - start
    test_loss, test_accuracy = evaluate(model, data.normalize(test_x), test_y)

    metrics = history | {
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "train_seconds": train_seconds,
        "workers": strategy.num_replicas_in_sync,
    }
    # train.py: one model. Here every replica holds a copy; after the last all-reduce the copies
    # are the same to the bit, which the digest in each replica's log shows.
    print(f"{task}: weights digest {weights_digest(model)}", flush=True)
    # train.py: always writes. Here only the chief does; the others leave --model-dir alone.
    if is_chief:
        args.model_dir.mkdir(parents=True, exist_ok=True)
        model.save(args.model_dir / "model.keras")
        (args.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    checkpoints.remove()  # train.py has none
    report({k: metrics[k] for k in ("test_accuracy", "test_loss")})
    return metrics


if __name__ == "__main__":
    main()
