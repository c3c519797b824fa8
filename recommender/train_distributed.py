"""Train the deep collaborative filter on several workers with MultiWorkerMirroredStrategy (Keras 3
on TensorFlow), and measure it against the two baselines as train.py does.

    python -m recommender.train_distributed --sample --model-dir /tmp/rec   # one worker
    kubectl apply -f recommender/manifests/trainjob.yaml   # two nodes on a cluster (Trainer v2)

A variant of recommender/train.py: the same flags, split, negative sampling, `name=value` metric
lines (val_ndcg_at_10 every epoch, for Katib), model.keras, mappings.json, metrics.json (with
the popularity and BPR baselines on the same test split) and history.json, so whatever reads
train.py's output reads this one's; and `main()` takes the same steps. Each step that differs is
marked `# train.py: ...` with what it replaces, and what several workers need is in
recommender/distributed.py (the strategy from TF_CONFIG, checkpoints, the training loop Keras 3
`Model.fit` cannot run under it). --batch-size is the global batch, split across the workers.
Only the chief writes the model and the files beside it.

The book's TFJob ran a single worker. Here the replicas read different halves of every global
batch, sum their gradients at every step and end with the same weights, to the bit; each prints
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

from recommender import baselines, data
from recommender.cli import fail, non_negative_int, output_dir, positive_int, seed
from recommender.export import save_purchases
from recommender.metrics import evaluate
from recommender.model import KERAS_FILE, add_model_arguments
from recommender.train import K, named, report, split


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the deep collaborative filter (Keras 3, MultiWorkerMirroredStrategy"
        " from TF_CONFIG) and measure it against the popularity and BPR baselines."
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
    # train.py: "examples per step" of one process; here the global batch, split across workers.
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="examples (purchases and negatives) per step, all workers together: the global"
        " batch (default: 256)",
    )
    add_model_arguments(parser)  # --n-factors, --dropout, --learning-rate, --negatives
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
        inter = data.load_chosen(args)
    except (OSError, data.DataError, data.DownloadError) as err:  # unreachable, corrupt, unreadable
        fail(f"{err} (check --dataset, --data-file, --data-dir and --url, or use --sample)")
    fit, val, test = split(inter, args.seed)
    # train.py lets Keras take a last, smaller batch; here every step needs a whole global batch
    # (the purchases and their negatives: at most 1 + negatives per purchase).
    if len(fit) * (1 + args.negatives) < args.batch_size:
        fail(
            f"--batch-size {args.batch_size} exceeds the {len(fit) * (1 + args.negatives)}"
            " training examples (purchases and their negatives)"
        )
    import keras  # only now: see the module docstring
    import tensorflow as tf

    from recommender.distributed import (
        Checkpoints,
        check_in_step,
        check_same_data,
        fit_model,
        interactions_digest,
        start_strategy,
        weights_digest,
    )
    from recommender.model import ItemScorer, build_model

    # train.py: one process. The strategy comes first: it starts this replica's gRPC server and
    # waits for every replica in TF_CONFIG before TensorFlow does anything else.
    strategy, task, is_chief = start_strategy()
    keras.utils.set_random_seed(args.seed)  # Python, NumPy and TensorFlow in one call
    print(
        f"users={inter.n_users} items={inter.n_items} interactions: train={len(fit)}"
        f" validation={len(val)} test={len(test)}",
        flush=True,
    )
    # train.py has one reader: here every replica reads and splits the data on its own, and
    # they check they hold the same training pairs, from which each draws the same negatives.
    digest = interactions_digest(fit)
    print(f"{task}: data digest {digest}", flush=True)
    check_same_data(strategy, digest, task)

    # train.py: build_model in train(). Here under the strategy's scope: every variable is mirrored.
    with strategy.scope():
        model = build_model(
            fit.n_users, fit.n_items, args.n_factors, args.dropout, args.learning_rate
        )
        model.optimizer.build(model.trainable_variables)  # its slots must be restorable
        step = tf.Variable(0, dtype=tf.int64, trainable=False)  # global steps done
    # train.py has no checkpoints: resume where the chief's last checkpoint left off.
    checkpoints = Checkpoints(model, step, args.checkpoint_dir, task, is_chief)
    checkpoints.resume()
    check_in_step(strategy, step, task)
    start = time.perf_counter()
    # train.py: a Model.fit per epoch, which cannot run under this strategy.
    history, examples = fit_model(strategy, model, step, checkpoints, fit, val, args)
    train_seconds = time.perf_counter() - start

    metrics = {name: values[-1] for name, values in history.items()}
    # The test split, once, as in train.py; every replica ranks with the same weights.
    metrics |= named("test", evaluate(ItemScorer(model), fit, test, K, also_seen=val))
    metrics |= {
        "train_seconds": train_seconds,
        # train.py: sampling and fitting only. Here the whole loop with its validation (the
        # steps this run took: a resumed run takes fewer), by every worker together.
        "train_examples_per_second": examples / train_seconds,
        "workers": strategy.num_replicas_in_sync,
    }
    # train.py: one model. Here every replica holds a copy; after the last all-reduce the copies
    # are the same to the bit, which the digest in each replica's log shows.
    print(f"{task}: weights digest {weights_digest(model)}", flush=True)
    # train.py: always writes. Here only the chief does, after the baselines (which need no
    # worker: the others leave --model-dir alone and stop). history.json holds the epochs this
    # run trained (after a resume, those since it).
    if is_chief:
        for prefix, score_fn in (
            ("popularity_test", baselines.popularity(fit)),
            ("bpr_test", baselines.bpr(fit, seed=args.seed)),
        ):
            metrics |= named(prefix, evaluate(score_fn, fit, test, K, also_seen=val))
        args.model_dir.mkdir(parents=True, exist_ok=True)
        model.save(args.model_dir / KERAS_FILE)
        data.IdMapping.of(inter).save(args.model_dir)
        save_purchases(inter, args.model_dir)  # what the server must not offer again
        (args.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (args.model_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
        print(
            f"wrote {KERAS_FILE}, {data.MAPPINGS} and metrics.json to {args.model_dir}", flush=True
        )
    checkpoints.remove()  # train.py has none
    report(metrics)
    return metrics


if __name__ == "__main__":
    main()
