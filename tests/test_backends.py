"""One model on every Keras backend.

The portable tests (marked `backends`: model, layers, losses, saving,
sampling and the core of training) pass under each other installed backend,
and a `.keras` file written under one backend decodes the same images under
another. JAX is a test dependency; PyTorch's lane runs where torch is
installed (docs/training.md, "Backends").
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from cvae.model.saving import load_model, save_model
from cvae.model.vae import VAE
from tests.helpers import TINY, smooth_images, write_image_folder

REPOSITORY = Path(__file__).resolve().parents[1]
OTHER_BACKENDS = [
    pytest.param(name, marks=pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{module} is not installed"))
    for name, module in (("jax", "jax"), ("tensorflow", "tensorflow"), ("torch", "torch"))
    if name != keras.backend.backend()]
# `cvae train` as on a machine without TensorFlow (the GPU machines have JAX
# and PyTorch alone): importing it fails.
WITHOUT_TENSORFLOW = """
import sys
class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("No module named 'tensorflow'")
sys.meta_path.insert(0, NoTensorFlow())
from cvae.cli import main
sys.exit(main(sys.argv[1:]))
"""
DECODE = """
import sys, numpy as np, keras, cvae
model = cvae.load_model(sys.argv[1])
np.save(sys.argv[3], model.decode(np.load(sys.argv[2])))
"""


def _run(backend, arguments, timeout=900):
    environment = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, *arguments], cwd=REPOSITORY, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def _decoded_under(backend, model_path, codes, tmp_path):
    np.save(tmp_path / "codes.npy", codes)
    result = _run(backend, ["-c", DECODE, str(model_path), str(tmp_path / "codes.npy"),
                            str(tmp_path / "decoded.npy")])
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(tmp_path / "decoded.npy")


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_the_portable_tests_pass_under_another_backend(backend):
    result = _run(backend, ["-m", "pytest", "-m", "backends", "-n", "0", "-q",
                            "-p", "no:cacheprovider", "tests"], timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_cvae_train_under_another_backend_makes_a_model_that_decodes_the_same_here(
        backend, tmp_path):
    folder = write_image_folder(tmp_path / "faces", n=16)
    run = tmp_path / "run"
    # Other backends train without TensorFlow, as on a machine that lacks it.
    command = ["-m", "cvae.cli"] if backend == "tensorflow" else ["-c", WITHOUT_TENSORFLOW]
    result = _run(backend, [*command, "train", "--data", str(folder), "--epochs", "1",
                            "--out", str(run), "--no-tensorboard", "--preset", "seed",
                            "--image-size", "16", "--latent-dim", "4", "--batch-size", "8",
                            "--kl-warmup-steps", "10", "--seed", "0"])
    assert result.returncode == 0, result.stderr[-3000:]
    codes = np.random.default_rng(0).standard_normal((4, 4)).astype("float32")
    there = _decoded_under(backend, run / "model.keras", codes, tmp_path)
    model = load_model(run / "model.keras")
    np.testing.assert_allclose(model.decode(codes), there, atol=1e-5)
    # The KL warm-up's step count was state in that backend's compiled steps.
    assert float(keras.ops.convert_to_numpy(model.kl_warmup_step)) == 2.0


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_a_model_trained_here_decodes_the_same_under_another_backend(backend, tmp_path):
    model = VAE(TINY.replace(kl_warmup_steps=10), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(smooth_images(32), batch_size=8, epochs=1, verbose=0)
    assert float(keras.ops.convert_to_numpy(model.kl_warmup_step)) == 4.0  # Counted its steps.
    save_model(model, tmp_path / "model.keras")
    codes = np.random.default_rng(1).standard_normal((4, TINY.latent_dim)).astype("float32")
    np.testing.assert_allclose(_decoded_under(backend, tmp_path / "model.keras", codes, tmp_path),
                               model.decode(codes), atol=1e-5)
