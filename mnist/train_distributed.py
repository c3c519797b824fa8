"""Train the MNIST CNN on several workers with MultiWorkerMirroredStrategy (Keras 3 on TensorFlow).

    python -m mnist.train_distributed --sample --epochs 3 --model-dir /tmp/mnist   # one worker
    kubectl apply -f mnist/manifests/trainjob.yaml     # two nodes on a cluster (Trainer v2)

A readable diff of mnist/train.py: the same flags, `name=value` metric lines, model.keras and
metrics.json, plus what several workers need; each change is marked `# train.py: ...`.

- The strategy reads TF_CONFIG, which the repository's `tensorflow-distributed` TrainingRuntime
  (or the legacy TFJob operator) sets on every replica; without it, this is one worker.
  --batch-size is the global batch, split evenly across the workers, so one worker and two take
  the same steps over the same batches and end with nearly the same model.
- Keras 3 `Model.fit` fails under this strategy (keras-team/keras#20585), so a short custom loop
  (`strategy.run`, `tf.nn.compute_average_loss`, `strategy.reduce`) trains the same Keras 3 model
  with its own optimizer.
- Every replica checkpoints the model, the optimizer and the step every --checkpoint-steps steps
  and after each epoch; a restarted replica resumes from the chief's latest checkpoint, so
  --checkpoint-dir must be storage every replica sees (the job's shared volume).
- A dead peer makes the others fail, not hang, so the operator's restartPolicy restarts them.
- Only the chief writes model.keras and metrics.json, then deletes the checkpoints.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mnist import data
from mnist.model import add_model_arguments, build_keras_model
from mnist.train import report

# How a dead peer is noticed. MultiWorkerMirroredStrategy starts TensorFlow's coordination service
# on the chief; every task sends it heartbeats, and when one stops (killed, OOM, node lost, frozen)
# the service aborts the collectives of the others, whose next step raises UnavailableError: here
# the survivor exited 8 to 17 s after its peer was SIGKILLed or SIGSTOPped, and 5 s after the
# chief was killed (its address refuses connections). A peer that is alive but stuck keeps
# heartbeating, so every all-reduce also gets a deadline. It must exceed the longest time a
# replica can legitimately wait for the other at a step (the other writing a checkpoint or
# evaluating, a slow start): 60 s is ample here, where those take a few seconds.
COLLECTIVE_TIMEOUT_SECONDS = 60.0
EVAL_BATCH_SIZE = 1000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the MNIST CNN (Keras 3, MultiWorkerMirroredStrategy from TF_CONFIG)."
    )
    data.add_data_arguments(parser)  # --sample, --dataset, --data-dir, --mirror
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path("model"),
        help="where model.keras and metrics.json go (default: model)",
    )
    parser.add_argument(
        "--epochs", type=int, default=5, help="passes over the training data (default: 5)"
    )
    # train.py: "images per step" of one process; here the global batch, split across workers.
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="images per step, all workers together: the global batch (default: 32)",
    )
    add_model_arguments(parser)  # --learning-rate, --num-layers, --optimizer
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    # train.py has no checkpoints: these two are what a restarted replica resumes from.
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("checkpoints"),
        help="training checkpoints, on storage every replica sees (default: checkpoints)",
    )
    parser.add_argument(
        "--checkpoint-steps",
        type=int,
        default=0,
        help="also checkpoint every N steps within an epoch; 0: only after each epoch (default: 0)",
    )
    return parser.parse_args(argv)


# train.py: the progress bar of Model.fit. No `name=value` here: Katib's StdOut collector would
# read it as a metric.
def progress(task: str, epoch: int, epochs: int, step: int, steps: int, loss: float) -> None:
    print(f"{task}: epoch {epoch}/{epochs} step {step}/{steps}, loss {loss:.4f}", flush=True)


# train.py: Model.evaluate, which would try to distribute itself. Every replica holds the same
# weights, so each one evaluates the whole split on its own, with no collective to wait on.
def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy) of the model on images x (normalized) and labels y."""
    probs = np.concatenate(
        [
            model(x[i : i + EVAL_BATCH_SIZE], training=False)
            for i in range(0, len(x), EVAL_BATCH_SIZE)
        ]
    )
    loss = keras.losses.sparse_categorical_crossentropy(y, probs)
    return float(np.mean(loss)), float(np.mean(np.argmax(probs, axis=1) == y))


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    # train.py: one process. The strategy comes first: it starts this replica's gRPC server and
    # waits for every replica in TF_CONFIG before TensorFlow does anything else.
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=COLLECTIVE_TIMEOUT_SECONDS
        )
    )
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type or "worker", resolver.task_id or 0
    task = f"{task_type}-{task_id}"
    # The chief writes the model: the `chief` task, or worker 0 when the job has none.
    has_chief = "chief" in resolver.cluster_spec().jobs
    is_chief = task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)
    workers = strategy.num_replicas_in_sync
    print(f"{task}: one of {workers} replicas{', the chief' if is_chief else ''}", flush=True)
    keras.utils.set_random_seed(args.seed)  # Python, NumPy and TensorFlow in one call

    (train_x, train_y), (test_x, test_y) = data.load_chosen(args)
    val, fit = data.validation_split(len(train_x), args.seed)
    print(f"train={len(fit)} validation={len(val)} test={len(test_x)} images", flush=True)

    # train.py: Model.fit shuffles and batches. Here every replica builds the same global batches
    # and the strategy gives each replica its slice of each. Whole batches only, so every replica
    # takes the same number of steps (the last partial batch of an epoch is left out).
    fit_images = tf.data.Dataset.from_tensor_slices((data.normalize(train_x[fit]), train_y[fit]))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    fit_images = fit_images.with_options(options)  # in-memory data has no files to shard by
    steps_per_epoch = len(fit) // args.batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"--batch-size {args.batch_size} exceeds the {len(fit)} training images")
    val_x, val_y = data.normalize(train_x[val]), train_y[val]

    # train.py: no scope. Variables created here are mirrored on every replica.
    with strategy.scope():
        model = build_keras_model(args.learning_rate, args.num_layers, args.optimizer)
        model.optimizer.build(model.trainable_variables)  # its slots must exist to be restored
        step = tf.Variable(0, dtype=tf.int64, trainable=False)  # global steps done
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, step=step)
    # Every replica saves, as the TensorFlow multi-worker guide does; only the chief's copy is
    # read back, the others write to a scratch folder of their own.
    save_dir = args.checkpoint_dir if is_chief else args.checkpoint_dir / f"scratch-{task}"
    manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=2)
    latest = tf.train.latest_checkpoint(args.checkpoint_dir)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        print(f"{task}: resumed from step {int(step.numpy())} ({latest})", flush=True)
    # Replicas that resumed from different steps would train apart: fail, then restart together.
    steps_sum = strategy.reduce("SUM", strategy.run(lambda: tf.cast(step, tf.float32)), axis=None)
    if int(steps_sum) != workers * int(step.numpy()):
        raise RuntimeError(
            f"{task}: replicas resumed from different steps: is --checkpoint-dir shared?"
        )

    @tf.function
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        def replica_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                per_image = keras.losses.sparse_categorical_crossentropy(y, probs)
                # Divided by the global batch: summed over replicas, it is the mean over it.
                loss = tf.nn.compute_average_loss(per_image, global_batch_size=args.batch_size)
            grads = tape.gradient(loss, model.trainable_variables)
            # Keras 3 optimizer sums the gradients over the replicas (an all-reduce) first.
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            hits = tf.reduce_sum(
                tf.cast(tf.argmax(probs, axis=1) == tf.cast(y, tf.int64), "float32")
            )
            return loss, hits

        loss, hits = strategy.run(replica_step, args=(x, y))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", hits, axis=None)

    history: dict[str, float] = {}
    total_steps = args.epochs * steps_per_epoch
    checkpoint_every = args.checkpoint_steps or steps_per_epoch
    every = max(1, steps_per_epoch // 10)  # ten progress lines an epoch
    start = time.perf_counter()
    while int(step.numpy()) < total_steps:
        epoch, skip = divmod(int(step.numpy()), steps_per_epoch)
        # The same order on every replica and after a restart: a fixed seed per epoch.
        batches = (
            fit_images.shuffle(len(fit), seed=args.seed + epoch)
            .batch(args.batch_size, drop_remainder=True)
            .skip(skip)
        )
        total_loss = total_hits = 0.0
        for i, (x, y) in enumerate(strategy.experimental_distribute_dataset(batches), skip + 1):
            loss, hits = train_step(x, y)
            step.assign_add(1)
            total_loss, total_hits = total_loss + float(loss), total_hits + float(hits)
            if i % every == 0 or i == steps_per_epoch:
                progress(task, epoch + 1, args.epochs, i, steps_per_epoch, total_loss / (i - skip))
            done = epoch * steps_per_epoch + i
            # None after the last step: the run is over (see the end of main).
            if (i % checkpoint_every == 0 or i == steps_per_epoch) and done < total_steps:
                manager.save(checkpoint_number=done)
        # An epoch resumed in the middle reports the steps it ran since the restart.
        steps = steps_per_epoch - skip
        val_loss, val_accuracy = evaluate(model, val_x, val_y)
        history = {
            "accuracy": total_hits / (steps * args.batch_size),
            "loss": total_loss / steps,
            "val_accuracy": val_accuracy,
            "val_loss": val_loss,
        }
        report({"epoch": epoch + 1, **history})
    train_seconds = time.perf_counter() - start
    test_loss, test_accuracy = evaluate(model, data.normalize(test_x), test_y)

    metrics = history | {
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "train_seconds": train_seconds,
        "workers": workers,
    }
    # train.py: one model. Here every replica holds a copy; after the last all-reduce the copies
    # are the same to the bit, which this digest shows in each replica's log.
    digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
    print(f"{task}: weights digest {digest[:16]}", flush=True)
    # train.py: always writes. Here only the chief does; the others leave --model-dir alone.
    if is_chief:
        args.model_dir.mkdir(parents=True, exist_ok=True)
        model.save(args.model_dir / "model.keras")
        (args.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    # Done: as Keras' BackupAndRestore does, drop the checkpoints so that the next run of the job
    # starts afresh instead of resuming a finished one (perhaps with other hyperparameters).
    shutil.rmtree(save_dir, ignore_errors=True)
    report({k: metrics[k] for k in ("test_accuracy", "test_loss")})
    return metrics


if __name__ == "__main__":
    main()
