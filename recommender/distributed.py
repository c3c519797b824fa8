"""What several TensorFlow workers need around the deep collaborative filter: the strategy,
checkpoints, the training loop with negative sampling, evaluation. `recommender/train_distributed.py`
uses it to stay a short variant of `recommender/train.py`. The strategy, the checkpoints and the
digest are mnist's (`# Copied from mnist.distributed...`); the training step and the epoch loop
are this case's own: MSE on 1 for a purchase and 0 for a sampled negative (model.py), on
(customer, product) index pairs, with new negatives every epoch.

- MultiWorkerMirroredStrategy reads TF_CONFIG, which the repository's TensorFlow TrainingRuntime
  (manifests/tensorflow-runtime.yaml) or the legacy TFJob operator sets on every replica;
  without it, one worker.
- Keras 3 `Model.fit` fails under this strategy (keras-team/keras#20585, still with Keras 3.15.1
  and TensorFlow 2.21), so `fit_model` is a short custom loop (`strategy.run`,
  `tf.nn.compute_average_loss`, `strategy.reduce`) around the same Keras 3 model and its own
  optimizer. The batch size is the global batch, split evenly across the workers.
- The negatives are drawn outside the strategy, by every replica alike: epoch e's examples come
  from a generator seeded with (seed, e) (`epoch_examples`), so every replica builds the same
  shuffled list of purchases and negatives, cuts it into the same global batches, and the
  strategy hands each replica its slice of each. One worker and two take the same steps over the
  same batches and end with nearly the same model (dropout draws its masks per replica: that is
  the only difference); a replica restarted mid-epoch rebuilds that epoch's examples exactly.
  `check_same_data` makes sure the replicas read the same interactions before they train.
- Validation NDCG@10 is measured after every epoch by every replica on its own, with
  recommender.metrics on the model's weights (model.ItemScorer): the replicas hold the same
  weights, so there is no collective to wait on and every replica prints the same figure.
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

from recommender.data import Interactions
from recommender.metrics import evaluate
from recommender.model import ItemScorer, training_examples
from recommender.train import K, named, report

# How a dead peer is noticed: see mnist/distributed.py, where this was measured. TensorFlow's
# coordination service on the chief aborts the others' collectives when a task stops sending
# heartbeats; a peer that is alive but stuck is caught by this deadline on every all-reduce.
COLLECTIVE_TIMEOUT_SECONDS = 60.0


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


def interactions_digest(inter: Interactions) -> str:
    """A short hash of the (customer, product) pairs in order, and of the item count."""
    pairs = np.stack([inter.users, inter.items]).astype(np.int64)
    return hashlib.sha256(pairs.tobytes() + str(inter.n_items).encode()).hexdigest()[:16]


def check_same_data(strategy: tf.distribute.Strategy, digest: str, task: str) -> None:
    """Replicas that read different interactions would draw different negatives and cut
    different global batches: fail before training.

    Each replica adds the first 20 bits of its digest (exact in a float32) to an all-reduce;
    the sum is n times this replica's value only when every replica has the same one (or a
    1-in-a-million collision).
    """
    mine = int(digest, 16) >> (4 * len(digest) - 20)
    total = strategy.reduce("SUM", strategy.run(lambda: tf.constant(float(mine))), axis=None)
    if int(total) != strategy.num_replicas_in_sync * mine:
        raise RuntimeError(
            f"{task}: the replicas read different training interactions (this one {digest}):"
            " do they read the same data with the same --seed?"
        )


def epoch_examples(
    fit: Interactions, negatives: int, seed: int, epoch: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Epoch `epoch`'s (0-based) inputs and labels, shuffled: the same on every replica and
    after a restart, from a generator seeded with (seed, epoch) alone.

    train.py draws every epoch from one generator that runs on from epoch to epoch; a replica
    that resumes at epoch e could not rebuild that generator's state without replaying epochs
    0..e-1, so here each epoch has a generator of its own.
    """
    return training_examples(fit, negatives, np.random.default_rng([seed, epoch]))


def make_train_step(strategy: tf.distribute.Strategy, model: keras.Model, global_batch: int):
    """One step on every replica's slice of a global batch: (summed loss, this worker's own
    share of the loss)."""

    @tf.function
    def train_step(x: dict[str, tf.Tensor], y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        def replica_step(x: dict[str, tf.Tensor], y: tf.Tensor) -> tf.Tensor:
            labels = tf.reshape(y, (-1, 1))  # 1: a purchase, 0: a sampled negative
            with tf.GradientTape() as tape:
                scores = model(x, training=True)  # (n, 1)
                per_pair = keras.losses.mean_squared_error(labels, scores)  # (n,)
                # Divided by the global batch: summed over replicas, it is the mean over it.
                loss = tf.nn.compute_average_loss(per_pair, global_batch_size=global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            # The Keras 3 optimizer sums the gradients over the replicas (an all-reduce) first.
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        loss = strategy.run(replica_step, args=(x, y))
        # This worker's summand before the all-reduce: its own pairs' loss, which differs from
        # the other workers' (they read other pairs) while their weights stay equal.
        own = tf.add_n(strategy.experimental_local_results(loss))
        return strategy.reduce("SUM", loss, axis=None), own

    return train_step


def fit_model(
    strategy: tf.distribute.Strategy,
    model: keras.Model,
    step: tf.Variable,
    checkpoints: Checkpoints,
    fit: Interactions,
    val: Interactions,
    args: argparse.Namespace,
) -> tuple[dict[str, list[float]], int]:
    """train.train's work from the saved step on: (every epoch's metrics, those this run
    trained; the examples it stepped through, all workers together), printed per epoch."""
    # Every epoch has as many examples: the purchases and `negatives` per purchase (of the users
    # who have not bought everything), so as many whole global batches, on every replica.
    per_epoch = len(epoch_examples(fit, args.negatives, args.seed, 0)[1])
    steps_per_epoch = per_epoch // args.batch_size
    train_step = make_train_step(strategy, model, args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    save_every = args.checkpoint_steps or steps_per_epoch
    every = max(1, steps_per_epoch // 10)  # ten progress lines an epoch
    # Global batch / this worker's part of it: the workers' count, times its GPUs if it has several.
    share = strategy.num_replicas_in_sync / len(strategy.extended.worker_devices)
    options = tf.data.Options()  # in-memory data has no files to shard by
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    history: dict[str, list[float]] = {}
    examples = 0
    while int(step.numpy()) < total_steps:
        epoch, skip = divmod(int(step.numpy()), steps_per_epoch)
        # train.py: training_examples and Model.fit's batches. Here the same examples on every
        # replica (a generator per epoch), already shuffled, cut into the same global batches;
        # the strategy gives each replica its slice of each.
        x, y = epoch_examples(fit, args.negatives, args.seed, epoch)
        batches = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .with_options(options)
            .batch(args.batch_size, drop_remainder=True)
            .skip(skip)
        )
        total_loss = total_own = 0.0
        for i, (bx, by) in enumerate(strategy.experimental_distribute_dataset(batches), skip + 1):
            loss, own = train_step(bx, by)
            step.assign_add(1)
            total_loss += float(loss)
            total_own += float(own) * share  # the mean over this worker's pairs
            if i % every == 0 or i == steps_per_epoch:
                where = f"epoch {epoch + 1}/{args.epochs} step {i}/{steps_per_epoch}"
                done_here = i - skip
                print(
                    f"{checkpoints.task}: {where}, loss {total_loss / done_here:.4f}"
                    f" (on this worker's {args.batch_size / share:.0f} pairs of each batch"
                    f" {total_own / done_here:.4f})",
                    flush=True,
                )
            done = epoch * steps_per_epoch + i
            if (i % save_every == 0 or i == steps_per_epoch) and done < total_steps:
                checkpoints.save(done)
        steps = steps_per_epoch - skip  # an epoch resumed midway reports the steps it ran
        examples += steps * args.batch_size
        # train.py: the same full-ranking validation. Every replica holds the same weights, so
        # each one ranks every item for every validation user on its own, with no collective.
        epoch_metrics = {"loss": total_loss / steps}
        epoch_metrics |= named("val", evaluate(ItemScorer(model), fit, val, K))
        for name, value in epoch_metrics.items():
            history.setdefault(name, []).append(value)
        report({"epoch": epoch + 1, **epoch_metrics})
    return history, examples


# Copied from mnist.distributed.weights_digest
def weights_digest(model: keras.Model) -> str:
    """A short hash of every weight: equal on all replicas when they trained in step."""
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()[:16]
