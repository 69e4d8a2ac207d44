"""Distributed training: mirrored replicas take the step one device takes."""

import os
import subprocess
import sys
import textwrap

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two logical CPUs, and no sampling noise (the replicas would draw other noise
# than one device does), so one step of each can be compared exactly.
MIRRORED = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from cvae.model import layers
    layers.keras.random.normal = lambda shape, dtype=None, seed=None: keras.ops.zeros(shape, dtype)
    from cvae.training.strategies import distribution_strategy
    from cvae.model.vae import VAE
    from tests.helpers import TINY, smooth_images

    images = smooth_images(16)
    results, initial = {}, None
    for name in ("none", "mirrored"):
        strategy = distribution_strategy(name)
        with strategy.scope():
            model = VAE(TINY, seed=0)
            initial = initial or model.get_weights()
            model.set_weights(initial)
            model.compile(optimizer=keras.optimizers.SGD(0.01))
        model.fit(images, batch_size=16, epochs=1, shuffle=False, verbose=0)
        results[name] = (strategy.num_replicas_in_sync, model.get_weights())
    assert results["mirrored"][0] == 2, results["mirrored"][0]
    for single, mirrored in zip(results["none"][1], results["mirrored"][1]):
        np.testing.assert_allclose(mirrored, single, rtol=1e-4, atol=1e-6)
    print("same")
""")


def test_mirrored_replicas_take_the_same_step_as_one_device():
    result = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True,
                            cwd=REPOSITORY, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("same")
