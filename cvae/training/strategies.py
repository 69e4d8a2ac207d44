"""Training on several local devices with tf.distribute.

With a strategy, `--batch-size` is the global batch: each of the N replicas
gets batch/N images per step, and the VAE's loss divides each replica's mean
by N before the gradients are summed, so one update is that of the mean over
the global batch, exactly as on one device. The learning rate therefore
means the same with and without distribution.

Several machines are not offered: TensorFlow's MultiWorkerMirroredStrategy
is broken under Keras 3 (keras-team/keras#20585, #21172), and Keras's own
path for several hosts is `keras.distribution` on JAX (docs/distributed.md).
"""

import contextlib

from cvae.errors import CvaeError

DISTRIBUTIONS = ("none", "mirrored")


class OneDevice:
    """No strategy: what the other backends train under (their steps see
    the whole batch), with the two members of a tf.distribute strategy that
    training uses."""

    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()


def distribution_strategy(name):
    import keras

    if name not in DISTRIBUTIONS:
        raise CvaeError(f"unknown distribution {name!r}; choose one of {DISTRIBUTIONS}")
    if keras.backend.backend() != "tensorflow":
        if name != "none":
            raise CvaeError(f"--distribute {name} needs the TensorFlow backend "
                            f"(this is {keras.backend.backend()})")
        return OneDevice()
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    # "mirrored": every GPU; on a machine without one, every logical CPU
    # device (one, unless the process split its CPU, as the tests do).
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])
