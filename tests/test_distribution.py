"""Distributed training: mirrored replicas take the step one device takes."""

import os
import subprocess
import sys
import textwrap

import pytest

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


@pytest.mark.slow  # A TensorFlow process with two logical CPUs.
def test_mirrored_replicas_take_the_same_step_as_one_device():
    result = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True,
                            cwd=REPOSITORY, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("same")


def _free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.mark.slow  # Two JAX processes.
def test_two_processes_on_loopback_train_one_model_with_keras_distribution(tmp_path):
    """`--distribute data-parallel` under JAX, as two hosts would run it: two
    processes, each with its half of the images and of the batch, end with
    the same weights, though the images and the validation share do not
    split evenly."""
    pytest.importorskip("jax")
    import numpy as np

    from cvae.model.saving import load_model
    from tests.helpers import smooth_images, tiny_model_file

    images = tmp_path / "faces.npy"
    np.save(images, smooth_images(37))
    model = tiny_model_file(tmp_path)
    port = _free_port()
    processes = []
    for index in range(2):
        env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "",
               "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{port}",
               "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}
        command = [sys.executable, "-m", "cvae.cli", "train", "--data", str(images),
                   "--initial-model", str(model), "--epochs", "1", "--batch-size", "8",
                   "--validation-split", "0.2", "--no-tensorboard", "--seed", "0",
                   "--distribute", "data-parallel", "--out", str(tmp_path / f"run{index}")]
        processes.append(subprocess.Popen(command, cwd=REPOSITORY, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    # Each its half, as many as the other: the odd image out is left out.
    shares = [next(line for line in out.splitlines() if line.startswith("training on"))
              for out, _ in outputs]
    assert shares[0].split(";")[0] == shares[1].split(";")[0] and "process" in shares[0]
    first, second = (load_model(tmp_path / f"run{index}" / "model.keras") for index in range(2))
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    changed = load_model(model).get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(first.get_weights(), changed))


def test_several_processes_refuse_a_batch_they_cannot_split_and_a_time_limit():
    from cvae.errors import CvaeError
    from cvae.training.runs import TrainOptions
    from cvae.training.trainer import _check_processes

    _check_processes(TrainOptions(data=None, batch_size=6, time_limit_minutes=5), 1)
    with pytest.raises(CvaeError, match="does not split over 4 processes"):
        _check_processes(TrainOptions(data=None, batch_size=6), 4)
    with pytest.raises(CvaeError, match="--time-limit cannot stop several processes"):
        _check_processes(TrainOptions(data=None, batch_size=8, time_limit_minutes=5), 2)
