"""What several TensorFlow workers need around the BiLSTM: the strategy, checkpoints, the training
loop, evaluation. `imdb_sentiment/train_distributed.py` uses it to stay a short variant of
`imdb_sentiment/train.py`. The strategy, the checkpoints and the digest are mnist's
(`# Copied from mnist.distributed...`); the training step and evaluation are this case's own: a
binary classifier with one sigmoid output, on word ids.

- MultiWorkerMirroredStrategy reads TF_CONFIG, which the repository's TensorFlow TrainingRuntime
  (manifests/tensorflow-runtime.yaml) or the legacy TFJob operator sets on every replica;
  without it, one worker.
- Keras 3 `Model.fit` fails under this strategy (keras-team/keras#20585, still with Keras 3.15.1
  and TensorFlow 2.21), so `fit_model` is a short custom loop (`strategy.run`,
  `tf.nn.compute_average_loss`, `strategy.reduce`) around the same Keras 3 model and its own
  optimizer. The batch size is the global batch, split evenly across the workers, so one worker
  and two take the same steps over the same batches and end with nearly the same model (dropout
  draws its masks per replica: that is the only difference).
- The words become ids before training, outside the strategy: every replica adapts the same
  TextVectorization on the same reviews, and `check_same_vocabulary` makes sure they agree.
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

from imdb_sentiment.model import log_loss
from imdb_sentiment.train import report

# How a dead peer is noticed: see mnist/distributed.py, where this was measured. TensorFlow's
# coordination service on the chief aborts the others' collectives when a task stops sending
# heartbeats; a peer that is alive but stuck is caught by this deadline on every all-reduce.
COLLECTIVE_TIMEOUT_SECONDS = 60.0
EVAL_BATCH_SIZE = 500  # reviews per forward pass when evaluating
_FORWARD: dict[int, object] = {}  # id(model) -> its traced forward pass


# Copied from mnist.distributed.start_strategy
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


# Copied from mnist.distributed.Checkpoints
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


# Copied from mnist.distributed.check_in_step
def check_in_step(strategy: tf.distribute.Strategy, step: tf.Variable, task: str) -> None:
    """Replicas that resumed from different steps would train apart: fail, restart together."""
    total = strategy.reduce("SUM", strategy.run(lambda: tf.cast(step, tf.float32)), axis=None)
    if int(total) != strategy.num_replicas_in_sync * int(step.numpy()):
        raise RuntimeError(
            f"{task}: replicas resumed from different steps: is --checkpoint-dir shared?"
        )


def vocabulary_digest(vocabulary: list[str]) -> str:
    """A short hash of the word list, in order: word i is id i."""
    return hashlib.sha256("\n".join(vocabulary).encode()).hexdigest()[:16]


def check_same_vocabulary(strategy: tf.distribute.Strategy, digest: str, task: str) -> None:
    """Replicas whose vocabularies differ would give one word two ids: fail before training.

    Each replica adds the first 20 bits of its digest (exact in a float32) to an all-reduce;
    the sum is n times this replica's value only when every replica has the same one (or a
    1-in-a-million collision).
    """
    mine = int(digest, 16) >> (4 * len(digest) - 20)
    total = strategy.reduce("SUM", strategy.run(lambda: tf.constant(float(mine))), axis=None)
    if int(total) != strategy.num_replicas_in_sync * mine:
        raise RuntimeError(
            f"{task}: the replicas built different vocabularies (this one {digest}): do they read"
            " the same data?"
        )


def make_train_step(strategy: tf.distribute.Strategy, model: keras.Model, global_batch: int):
    """One step on every replica's slice of a global batch: (summed loss, correct answers, this
    worker's own share of the loss)."""

    @tf.function
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        def replica_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            labels = tf.cast(tf.reshape(y, (-1, 1)), tf.float32)
            with tf.GradientTape() as tape:
                probs = model(x, training=True)  # (n, 1): P(positive)
                per_review = keras.losses.binary_crossentropy(labels, probs)  # (n,)
                # Divided by the global batch: summed over replicas, it is the mean over it.
                loss = tf.nn.compute_average_loss(per_review, global_batch_size=global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            # The Keras 3 optimizer sums the gradients over the replicas (an all-reduce) first.
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            hits = tf.reduce_sum(tf.cast((probs >= 0.5) == (labels == 1.0), "float32"))
            return loss, hits

        loss, hits = strategy.run(replica_step, args=(x, y))
        # This worker's summand before the all-reduce: its own reviews' loss, which differs
        # from the other workers' (they read other reviews) while their weights stay equal.
        own = tf.add_n(strategy.experimental_local_results(loss))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", hits, axis=None), own

    return train_step


def fit_model(
    strategy: tf.distribute.Strategy,
    model: keras.Model,
    step: tf.Variable,
    checkpoints: Checkpoints,
    reviews: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    args: argparse.Namespace,
) -> dict[str, list[float]]:
    """Model.fit's work from the saved step on: every epoch's metrics (those this run trained),
    printed per epoch. reviews and validation: (word ids (N, length), labels (N,))."""
    x, y = reviews
    steps_per_epoch = len(x) // args.batch_size  # whole batches, the same count on every replica
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    options = tf.data.Options()  # in-memory data has no files to shard by
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    train_step = make_train_step(strategy, model, args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    save_every = args.checkpoint_steps or steps_per_epoch
    every = max(1, steps_per_epoch // 10)  # ten progress lines an epoch
    # Global batch / this worker's part of it: the workers' count, times its GPUs if it has several.
    share = strategy.num_replicas_in_sync / len(strategy.extended.worker_devices)
    history: dict[str, list[float]] = {}
    while int(step.numpy()) < total_steps:
        epoch, skip = divmod(int(step.numpy()), steps_per_epoch)
        # The same global batches on every replica and after a restart: a fixed seed per epoch;
        # the strategy gives each replica its slice of each.
        batches = (
            dataset.shuffle(len(x), seed=args.seed + epoch)
            .batch(args.batch_size, drop_remainder=True)
            .skip(skip)
        )
        total_loss = total_hits = total_own = 0.0
        for i, (bx, by) in enumerate(strategy.experimental_distribute_dataset(batches), skip + 1):
            loss, hits, own = train_step(bx, by)
            step.assign_add(1)
            total_loss, total_hits = total_loss + float(loss), total_hits + float(hits)
            total_own += float(own) * share  # the mean over this worker's reviews
            if i % every == 0 or i == steps_per_epoch:
                where = f"epoch {epoch + 1}/{args.epochs} step {i}/{steps_per_epoch}"
                done_here = i - skip
                print(
                    f"{checkpoints.task}: {where}, loss {total_loss / done_here:.4f}"
                    f" (on this worker's {args.batch_size / share:.0f} reviews of each batch"
                    f" {total_own / done_here:.4f})",
                    flush=True,
                )
            done = epoch * steps_per_epoch + i
            if (i % save_every == 0 or i == steps_per_epoch) and done < total_steps:
                checkpoints.save(done)
        steps = steps_per_epoch - skip  # an epoch resumed midway reports the steps it ran
        val_loss, val_accuracy = evaluate(model, *validation)
        epoch_metrics = {
            "accuracy": total_hits / (steps * args.batch_size),
            "loss": total_loss / steps,
            "val_accuracy": val_accuracy,
            "val_loss": val_loss,
        }
        for name, value in epoch_metrics.items():
            history.setdefault(name, []).append(value)
        report({"epoch": epoch + 1, **epoch_metrics})
    return history


# train.py: Model.predict and Model.evaluate, which would try to distribute themselves. Every
# replica holds the same weights, so each one runs the whole split on its own, with no
# collective to wait on.
def probabilities(model: keras.Model, word_ids: np.ndarray) -> np.ndarray:
    """P(positive) of each review, float64 (N,), before calibration."""
    if id(model) not in _FORWARD:  # traced once per model, not once per epoch
        _FORWARD[id(model)] = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    forward = _FORWARD[id(model)]
    batches = range(0, len(word_ids), EVAL_BATCH_SIZE)
    probs = [np.asarray(forward(word_ids[i : i + EVAL_BATCH_SIZE])) for i in batches]
    return np.concatenate(probs).reshape(-1).astype(np.float64)


def evaluate(model: keras.Model, word_ids: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy) of the model on reviews as word ids and their labels (1: positive)."""
    probs = probabilities(model, word_ids)
    return log_loss(probs, labels), float(np.mean((probs >= 0.5) == labels))


# Copied from mnist.distributed.weights_digest
def weights_digest(model: keras.Model) -> str:
    """A short hash of every weight: equal on all replicas when they trained in step."""
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()[:16]
