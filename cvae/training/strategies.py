"""Training on several devices: tf.distribute on one TensorFlow host, and
`keras.distribution` on JAX, on one host or several.

`--batch-size` is the global batch. Under "mirrored", each of the N replicas
gets batch/N images per step, and the VAE's loss divides each replica's mean
by N before the gradients are summed, so one update is that of the mean over
the global batch, exactly as on one device. Under "data-parallel" (JAX), the
step sees the global batch, sharded over the devices by Keras. Either way
the learning rate means the same with and without distribution.

Several hosts run one process each under "data-parallel", started with
Keras's variables KERAS_DISTRIBUTION_JOB_ADDRESSES (the coordinator's
address first), KERAS_DISTRIBUTION_NUM_PROCESSES and
KERAS_DISTRIBUTION_PROCESS_ID; each process trains on its share of the
images (`Strategy.shard`) with its share of the batch. TensorFlow's
MultiWorkerMirroredStrategy is not offered: it is broken under Keras 3
(keras-team/keras#20585, #21172; docs/distributed.md).
"""

import contextlib
import os

from cvae.errors import CvaeError

DISTRIBUTIONS = ("none", "mirrored", "data-parallel")


class OneDevice:
    """One process on one device, or a Keras distribution (JAX), whose
    steps see the whole batch: the members of a tf.distribute strategy that
    training uses, and this process's share of a run over several."""

    def __init__(self, devices=1, process_index=0, process_count=1):
        self.num_replicas_in_sync = devices
        self.process_index, self.process_count = process_index, process_count

    def scope(self):
        return contextlib.nullcontext()

    def shard(self, images):
        """This process's share of the images: every process_count-th one,
        as many for each process (the few left over are not used), so every
        process takes the same steps with batches of the same sizes."""
        share = len(images) // self.process_count
        return images[self.process_index::self.process_count][:share]


def distribution_strategy(name):
    import keras

    if name not in DISTRIBUTIONS:
        raise CvaeError(f"unknown distribution {name!r}; choose one of {DISTRIBUTIONS}")
    backend = keras.backend.backend()
    if name == "data-parallel":
        if backend != "jax":
            raise CvaeError(f"--distribute data-parallel needs the JAX backend "
                            f"(this is {backend}; set KERAS_BACKEND=jax)")
        return _data_parallel()
    if backend != "tensorflow":
        if name != "none":
            raise CvaeError(f"--distribute {name} needs the TensorFlow backend "
                            f"(this is {backend})")
        return OneDevice()
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    # "mirrored": every GPU; on a machine without one, every logical CPU
    # device (one, unless the process split its CPU, as the tests do).
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def _data_parallel():
    """keras.distribution.DataParallel over every device of every process."""
    import jax
    import keras

    if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1:
        # Processes on CPUs reduce their gradients through Gloo; GPUs use their own.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        keras.distribution.initialize()
    # Each process reads its own share of the images (OneDevice.shard).
    keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
    return OneDevice(len(keras.distribution.list_devices()), jax.process_index(),
                     jax.process_count())
