"""Training on several devices or machines with tf.distribute.

With any strategy, `--batch-size` is the global batch: each of the N
replicas gets batch/N images per step, and the VAE's train step divides each
replica's loss by N before the gradients are summed, so one update is that of
the mean over the global batch, exactly as on one device. The learning rate
therefore means the same with and without distribution.
"""

import os

from cvae.errors import CvaeError

DISTRIBUTIONS = ("none", "mirrored", "multiworker")


def distribution_strategy(name):
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # Every GPU; on a machine without one, every logical CPU device (one,
        # unless the process split its CPU, as the tests do).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise CvaeError("--distribute multiworker needs TF_CONFIG to describe the cluster")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise CvaeError(f"unknown distribution {name!r}; choose one of {DISTRIBUTIONS}")


def needs_float_batches(name):
    """Keras averages a first batch across workers to build the model, and
    multi-worker collectives cannot reduce uint8; such runs feed float32."""
    return name == "multiworker"
