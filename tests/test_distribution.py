"""Distributed training: mirrored replicas match one device; two workers agree."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cvae.saving import load_model
from tests.helpers import smooth_images

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
    from cvae import layers
    layers.keras.random.normal = lambda shape, dtype=None, seed=None: keras.ops.zeros(shape, dtype)
    from cvae.distribution import distribution_strategy
    from cvae.model import VAE
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


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:
        handle.bind(("127.0.0.1", 0))
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


def test_two_workers_on_loopback_end_with_the_same_weights(tmp_path):
    images = tmp_path / "faces.npy"
    np.save(images, smooth_images(64))
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        environment = {**os.environ, "TF_CONFIG": json.dumps(config), "CUDA_VISIBLE_DEVICES": ""}
        command = [sys.executable, "-m", "cvae.cli", "train", "--data", str(images),
                   "--distribute", "multiworker", "--epochs", "1", "--batch-size", "8",
                   "--validation-split", "0", "--preset", "seed", "--image-size", "16",
                   "--latent-dim", "4", "--seed", "0", "--no-tensorboard",
                   "--out", str(tmp_path / f"worker{index}")]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, env=environment))
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail("the two workers did not finish in time")
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
        assert "2 replica(s)" in output
    first, second = (load_model(tmp_path / f"worker{i}" / "model.keras") for i in range(2))
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
