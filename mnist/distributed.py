"""What several TensorFlow workers need around a Keras 3 model: the strategy, checkpoints, the
training loop, evaluation. `mnist/train_distributed.py` uses it to stay a short variant of
`mnist/train.py`; the later TensorFlow case studies copy it (`# Copied from mnist.distributed...`).

- MultiWorkerMirroredStrategy reads TF_CONFIG, which the repository's `tensorflow-distributed`
  TrainingRuntime (or the legacy TFJob operator) sets on every replica; without it, one worker.
- Keras 3 `Model.fit` fails under this strategy (keras-team/keras#20585, still with Keras 3.15.1
  and TensorFlow 2.21), so `fit_model` is a short custom loop (`strategy.run`,
  `tf.nn.compute_average_loss`, `strategy.reduce`) around the same Keras 3 model and its own
  optimizer. The batch size is the global batch, split evenly across the workers, so one worker
  and two take the same steps over the same batches and end with nearly the same model.
- Every replica checkpoints the model, the optimizer and the step every `checkpoint_steps` steps
  and after each epoch; a restarted replica resumes from the chief's latest checkpoint, so the
  checkpoint folder must be storage every replica sees (the job's shared volume).
- A dead peer makes the others fail, not hang, so the job's restart rules restart them.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

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


def start_strategy() -> tuple[tf.distribute.Strategy, str, bool]:
    """The strategy, this replica's name (`worker-1`) and whether it is the chief."""
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=COLLECTIVE_TIMEOUT_SECONDS
        )
    )
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type or "worker", resolver.task_id or 0
    # The chief writes the model: the `chief` task, or worker 0 when the job has none.
    has_chief = "chief" in resolver.cluster_spec().jobs
    is_chief = task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)
    task = f"{task_type}-{task_id}"
    chief = ", the chief" if is_chief else ""
    print(f"{task}: one of {strategy.num_replicas_in_sync} replicas{chief}", flush=True)
    return strategy, task, is_chief


class Checkpoints:
    """The model, its optimizer and the global step, saved and restored as one."""

    def __init__(self, model: keras.Model, step: tf.Variable, folder: Path, task: str, chief: bool):
        self.task, self.folder = task, folder
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, step=step)
        # Every replica saves, as the TensorFlow multi-worker guide does; only the chief's copy
        # is read back, the others write to a scratch folder of their own.
        self.own = folder if chief else folder / f"scratch-{task}"
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.own, max_to_keep=2)

    def resume(self) -> None:
        latest = tf.train.latest_checkpoint(self.folder)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            step = int(self.checkpoint.step.numpy())
            print(f"{self.task}: resumed from step {step} ({latest})", flush=True)

    def save(self, step: int) -> None:
        self.manager.save(checkpoint_number=step)

    def remove(self) -> None:
        # As Keras' BackupAndRestore does: the next run of the job starts afresh instead of
        # resuming a finished one (perhaps with other hyperparameters).
        shutil.rmtree(self.own, ignore_errors=True)


def check_in_step(strategy: tf.distribute.Strategy, step: tf.Variable, task: str) -> None:
    """Replicas that resumed from different steps would train apart: fail, restart together."""
    total = strategy.reduce("SUM", strategy.run(lambda: tf.cast(step, tf.float32)), axis=None)
    if int(total) != strategy.num_replicas_in_sync * int(step.numpy()):
        raise RuntimeError(
            f"{task}: replicas resumed from different steps: is --checkpoint-dir shared?"
        )


def make_train_step(strategy: tf.distribute.Strategy, model: keras.Model, global_batch: int):
    """One step on every replica's slice of a global batch: (summed loss, correct answers)."""

    @tf.function
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        def replica_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                per_image = keras.losses.sparse_categorical_crossentropy(y, probs)
                # Divided by the global batch: summed over replicas, it is the mean over it.
                loss = tf.nn.compute_average_loss(per_image, global_batch_size=global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            # The Keras 3 optimizer sums the gradients over the replicas (an all-reduce) first.
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            hits = tf.reduce_sum(tf.cast(tf.argmax(probs, 1) == tf.cast(y, tf.int64), "float32"))
            return loss, hits

        loss, hits = strategy.run(replica_step, args=(x, y))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", hits, axis=None)

    return train_step


def fit_model(
    strategy: tf.distribute.Strategy,
    model: keras.Model,
    step: tf.Variable,
    checkpoints: Checkpoints,
    images: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    args: argparse.Namespace,
) -> dict[str, float]:
    """Model.fit's work from the saved step on: the last epoch's metrics, printed per epoch."""
    x, y = images
    steps_per_epoch = len(x) // args.batch_size  # whole batches, the same count on every replica
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    options = tf.data.Options()  # in-memory data has no files to shard by
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    train_step = make_train_step(strategy, model, args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    save_every = args.checkpoint_steps or steps_per_epoch
    every = max(1, steps_per_epoch // 10)  # ten progress lines an epoch
    history: dict[str, float] = {}
    while int(step.numpy()) < total_steps:
        epoch, skip = divmod(int(step.numpy()), steps_per_epoch)
        # The same global batches on every replica and after a restart: a fixed seed per epoch;
        # the strategy gives each replica its slice of each.
        batches = (
            dataset.shuffle(len(x), seed=args.seed + epoch)
            .batch(args.batch_size, drop_remainder=True)
            .skip(skip)
        )
        total_loss = total_hits = 0.0
        for i, (bx, by) in enumerate(strategy.experimental_distribute_dataset(batches), skip + 1):
            loss, hits = train_step(bx, by)
            step.assign_add(1)
            total_loss, total_hits = total_loss + float(loss), total_hits + float(hits)
            if i % every == 0 or i == steps_per_epoch:
                where = f"epoch {epoch + 1}/{args.epochs} step {i}/{steps_per_epoch}"
                print(
                    f"{checkpoints.task}: {where}, loss {total_loss / (i - skip):.4f}", flush=True
                )
            done = epoch * steps_per_epoch + i
            if (i % save_every == 0 or i == steps_per_epoch) and done < total_steps:
                checkpoints.save(done)
        steps = steps_per_epoch - skip  # an epoch resumed midway reports the steps it ran
        val_loss, val_accuracy = evaluate(model, *validation)
        history = {
            "accuracy": total_hits / (steps * args.batch_size),
            "loss": total_loss / steps,
            "val_accuracy": val_accuracy,
            "val_loss": val_loss,
        }
        report({"epoch": epoch + 1, **history})
    return history


# train.py: Model.evaluate, which would try to distribute itself. Every replica holds the same
# weights, so each one evaluates the whole split on its own, with no collective to wait on.
def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy) of the model on images x (normalized) and labels y."""
    batches = range(0, len(x), EVAL_BATCH_SIZE)
    probs = np.concatenate([model(x[i : i + EVAL_BATCH_SIZE], training=False) for i in batches])
    loss = keras.losses.sparse_categorical_crossentropy(y, probs)
    return float(np.mean(loss)), float(np.mean(np.argmax(probs, axis=1) == y))


def weights_digest(model: keras.Model) -> str:
    """A short hash of every weight: equal on all replicas when they trained in step."""
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()[:16]
