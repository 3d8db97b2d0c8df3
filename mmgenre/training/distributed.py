"""tf.distribute strategies for training beyond one device or one machine.

* default: the current device (no distribution).
* mirrored: MirroredStrategy over the local GPUs (or the CPU); model.fit as usual.
* multiworker: MultiWorkerMirroredStrategy across processes or machines, configured by
  TF_CONFIG. Keras 3's model.fit fails under it ("Attempt to convert a value
  (PerReplica...)", keras-team/keras issue 20585, open), so training runs a custom step:
  ``strategy.run`` inside a tf.function on a distributed dataset, with the model's own
  Keras layers, optimizer and loss. Checked here: two workers on loopback end with
  identical weights.

Batch sizes: ``data.batch_size`` is the global batch; each of the N replicas (GPUs x
workers) gets batch_size / N examples per step, and the loss is averaged over the
global batch (tf.nn.compute_average_loss), so the gradient matches one device with
the same global batch.

Worker failure: after every epoch each worker writes its weights and epoch number
under ``<run dir>/backup_multiworker``; a restarted cluster resumes from there
(the role BackupAndRestore plays for model.fit).
"""

from __future__ import annotations

import json
import math
import os

import keras
import tensorflow as tf

from mmgenre import files
from mmgenre.config import STRATEGIES, ConfigError
from mmgenre.runs import RunFolder


def make_strategy(name: str):
    if name not in STRATEGIES:
        raise ConfigError(f"train.strategy must be one of {list(STRATEGIES)}, got {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if "TF_CONFIG" not in os.environ:
        raise ConfigError("train.strategy multiworker needs TF_CONFIG (cluster addresses and this "
                          "worker's index); see README, 'Distributed training'")
    return tf.distribute.MultiWorkerMirroredStrategy()


def run_multiworker_epochs(model, strategy, loss, learning_rate, train_ds, n_train, batch_size, epochs,
                    backup_dir, log=print):
    """Trains ``model`` (built in ``strategy.scope()``) with a custom distributed step.

    Args:
        loss: a Keras loss; its per-example values are averaged over the global batch.
        train_ds: batched (global batch) tf.data dataset of (inputs, targets).
        n_train: examples per epoch (sets the steps every worker runs in lockstep).
    Returns:
        [(epoch index, mean training loss)] for the epochs run in this call.
    """
    per_example = loss.__class__.from_config({**loss.get_config(), "reduction": None})
    with strategy.scope():
        optimizer = keras.optimizers.Adam(learning_rate)
        # Slots made here, not in train_step's first trace (which would trace it twice; see
        # training.fit.compile_built).
        optimizer.build(model.trainable_variables)
    options = tf.data.Options()
    # Element-wise sharding: the pipeline reads a list of files, not one file per worker.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist = iter(strategy.experimental_distribute_dataset(train_ds.repeat().with_options(options)))
    steps = math.ceil(n_train / batch_size)

    @tf.function
    def train_step(iterator):
        def replica_step(inputs, targets):
            with tf.GradientTape() as tape:
                probs = model(inputs, training=True)
                value = tf.nn.compute_average_loss(per_example(targets, probs),
                                                   global_batch_size=batch_size)
            grads = tape.gradient(value, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return value

        inputs, targets = next(iterator)
        return strategy.reduce(tf.distribute.ReduceOp.SUM,
                               strategy.run(replica_step, args=(inputs, targets)), axis=None)

    os.makedirs(backup_dir, exist_ok=True)
    state_path = os.path.join(backup_dir, RunFolder.MULTIWORKER_STATE)
    weights_path = os.path.join(backup_dir, RunFolder.MULTIWORKER_WEIGHTS)
    start = 0
    if os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as f:
            start = json.load(f)["epochs_done"]
        model.load_weights(weights_path)
        log(f"resuming multi-worker training after epoch {start}")
    losses = []
    for epoch in range(start, epochs):
        total = 0.0
        for _ in range(steps):
            total += float(train_step(dist))
        losses.append((epoch, total / steps))
        log(f"epoch {epoch + 1}/{epochs} - loss {losses[-1][1]:.4f} "
            f"({strategy.num_replicas_in_sync} replicas, global batch {batch_size})")
        with files.atomic_path(weights_path) as tmp:
            model.save_weights(tmp)
        files.write_json(state_path, {"epochs_done": epoch + 1})
    return losses
