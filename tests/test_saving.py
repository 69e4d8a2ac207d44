import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import cvae
from cvae import precision
from cvae.errors import CvaeError
from cvae.model.saving import load_model, save_model
from cvae.model.vae import VAE

# Portable: tests/test_backends.py runs this module under JAX too.
pytestmark = pytest.mark.backends

FRESH_PROCESS = """
import sys, numpy as np, cvae

model = cvae.load_model(sys.argv[1])
images = np.load(sys.argv[2])
z_mean, z_log_var = model.encode(images)
np.savez(sys.argv[3], z_mean=z_mean, z_log_var=z_log_var, decoded=model.decode(z_mean),
         iterations=int(model.optimizer.iterations.numpy()))
"""


@pytest.fixture
def trained(tiny_config, tiny_images, tmp_path):
    config = tiny_config.replace(decoder_scale="learned", kl_warmup_steps=5)
    model = VAE(config, seed=0, dtype="mixed_bfloat16")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(tiny_images, batch_size=16, epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    save_model(model, path)
    return model, path


def test_a_fresh_process_gets_identical_outputs(trained, tiny_images, tmp_path):
    model, path = trained
    np.save(tmp_path / "images.npy", tiny_images[:5])
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(path), str(tmp_path / "images.npy"),
                    str(tmp_path / "out.npz")], check=True)
    fresh = np.load(tmp_path / "out.npz")
    z_mean, z_log_var = model.encode(tiny_images[:5])
    np.testing.assert_array_equal(fresh["z_mean"], z_mean)
    np.testing.assert_array_equal(fresh["z_log_var"], z_log_var)
    np.testing.assert_array_equal(fresh["decoded"], model.decode(z_mean))
    assert fresh["iterations"] == 8  # The optimizer state travels with the model.


def test_training_continues_after_loading(trained, tiny_images):
    model, path = trained
    loaded = load_model(path)
    assert loaded.config == model.config and loaded.dtype_policy.name == "mixed_bfloat16"
    assert float(loaded.log_decoder_scale.numpy()) == float(model.log_decoder_scale.numpy())
    before = [w.copy() for w in loaded.get_weights()]
    history = loaded.fit(tiny_images, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert int(loaded.optimizer.iterations.numpy()) == 12
    assert any(not np.array_equal(a, b) for a, b in zip(before, loaded.get_weights()))


def test_loading_in_another_precision_keeps_the_weights(trained, tiny_images):
    model, path = trained
    as_float32 = load_model(path, precision="float32")
    assert as_float32.dtype_policy.name == "float32"
    np.testing.assert_allclose(as_float32.encode(tiny_images[:3])[0],
                               model.encode(tiny_images[:3])[0], atol=0.1)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_runs_float32_only_where_bfloat16_would_be_emulated(
        trained, tmp_path, monkeypatch, native):
    model, path = trained
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: native)
    loaded = load_model(path, precision="auto")
    assert loaded.dtype_policy.name == ("mixed_bfloat16" if native else "float32")
    for before, after in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(after, before)
    float32_path = tmp_path / "float32.keras"
    save_model(load_model(path, precision="float32"), float32_path)
    assert load_model(float32_path, precision="auto").dtype_policy.name == "float32"


def test_save_is_atomic_and_leaves_no_temporary_files(trained, tmp_path):
    model, path = trained
    save_model(model, path)  # Overwrite in place.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    assert zipfile.is_zipfile(path)


def test_unloadable_files_give_clear_errors(tmp_path):
    with pytest.raises(CvaeError, match="no such model file"):
        load_model(tmp_path / "missing.keras")
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(CvaeError, match="cannot load model"):
        load_model(garbage)
    other = tmp_path / "other.keras"
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(other)
    with pytest.raises(CvaeError, match="not a cvae VAE"):
        load_model(other)


def test_safe_mode_refuses_a_lambda(tmp_path):
    path = tmp_path / "lambda.keras"
    keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)]).save(path)
    with pytest.raises(CvaeError, match="cannot load model"):
        load_model(path)


def test_public_api_is_exported():
    assert cvae.load_model is load_model and cvae.VAE is VAE
    with pytest.raises(AttributeError):
        cvae.does_not_exist


def test_a_checkout_never_installed_finds_its_saved_models(monkeypatch):
    import importlib.resources
    from pathlib import Path

    from cvae.model import saving

    def not_installed(package):
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(importlib.resources, "files", not_installed)
    folder = saving._installed_models()
    assert folder == Path(__file__).resolve().parent.parent / "saved_models"
    assert (folder / saving.DEFAULT_MODEL_NAME).is_file()
