"""The JAX training path (cvae.jax_training, scripts/jax_train.py): it trains
in a subprocess with KERAS_BACKEND=jax, first stage and second stage, and
its weights come back into a TensorFlow model that reconstructs exactly as
the JAX model did; one step under JAX is the TensorFlow step."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cvae.errors import CvaeError
from cvae.metrics import psnr
from cvae.model import VAE
from cvae.saving import load_weights_in_parts, save_weights_in_parts
from tests.helpers import TINY, smooth_images

REPOSITORY = Path(__file__).resolve().parents[1]
SCRIPT = REPOSITORY / "scripts" / "jax_train.py"
TINY_SETTINGS = ["image_size=16", "filters=[8, 16]", "latent_dim=4", "output_filters=4",
                 "discriminator_filters=[8, 16]"]


def test_weights_in_parts_round_trip(tmp_path, monkeypatch):
    import cvae.saving

    monkeypatch.setattr(cvae.saving, "_PART_BYTES", 2_000)
    model, other = VAE(TINY, seed=0), VAE(TINY, seed=1)
    save_weights_in_parts(model.first_stage_variables, tmp_path / "parts")
    assert len(list((tmp_path / "parts").glob("part-*.npz"))) > 1
    load_weights_in_parts(other.first_stage_variables, tmp_path / "parts")
    for mine, theirs in zip(model.first_stage_weights(), other.first_stage_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_weights_in_parts_refuse_a_missing_part_or_another_model(tmp_path, monkeypatch):
    import cvae.saving

    monkeypatch.setattr(cvae.saving, "_PART_BYTES", 2_000)
    save_weights_in_parts(VAE(TINY).first_stage_variables, tmp_path / "parts")
    wider = VAE(TINY.replace(filters=(8, 24)))
    with pytest.raises(CvaeError, match="shape"):
        load_weights_in_parts(wider.first_stage_variables, tmp_path / "parts")
    with pytest.raises(CvaeError, match="weights for"):
        load_weights_in_parts(VAE(TINY).first_stage_variables[:-1], tmp_path / "parts")
    sorted((tmp_path / "parts").glob("part-*.npz"))[1].unlink()
    with pytest.raises(CvaeError, match="weight parts"):
        load_weights_in_parts(VAE(TINY).first_stage_variables, tmp_path / "parts")


# Runs a script as on a GPU machine without TensorFlow: importing it fails as
# an absent module does (Keras checks sys.modules, so nothing is put there).
_WITHOUT_TENSORFLOW = """
import runpy, sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoTensorFlow())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _script(*arguments, backend="tensorflow"):
    environment = {**os.environ, "KERAS_BACKEND": backend,
                   "PYTHONPATH": str(REPOSITORY), "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, str(SCRIPT), *arguments]
    if backend == "jax":
        command = [sys.executable, "-c", _WITHOUT_TENSORFLOW, str(SCRIPT), *arguments]
    return subprocess.run(command, capture_output=True, text=True, env=environment,
                          timeout=600)


def _pack(tmp_path, count=96):
    """A pack of `count` tiny faces, a fifth of them for validation."""
    from PIL import Image

    folder = tmp_path / "faces"
    folder.mkdir()
    for index, image in enumerate(smooth_images(count, size=16)):
        Image.fromarray(image).save(folder / f"face_{index:03d}.png")
    pack = tmp_path / "pack.npz"
    packed = _script("pack", "--data", str(folder), "--image-size", "16",
                     "--validation-split", "0.2", "-o", str(pack))
    assert packed.returncode == 0, packed.stderr
    return pack


def _read_pack(pack, part):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from jax_train import read_pack
    finally:
        sys.path.remove(str(SCRIPT.parent))
    # In this process: a pool forked from a test worker is not needed here.
    return read_pack(pack, part, processes=1)


def test_trains_with_jax_and_comes_back_into_tensorflow(tmp_path):
    pytest.importorskip("jax")
    pack = _pack(tmp_path)
    run = tmp_path / "run"
    settings = [argument for setting in TINY_SETTINGS for argument in ("--set", setting)]
    trained = _script("train", str(pack), "--out", str(run), *settings,
                      "--likelihood-minutes", "0.25", "--adversarial-minutes", "0.15",
                      "--batch-size", "8", "--kl-warmup-steps", "0",
                      "--second-stage-epochs", "2", backend="jax")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    record = json.loads((run / "record.json").read_text())
    likelihood, adversarial = record["phases"]["likelihood"], record["phases"]["adversarial"]
    # At least two logged means of 50 steps each, the later one lower.
    history = likelihood["history"]
    assert len(history) >= 2 and history[-1]["loss"] < history[0]["loss"]
    assert adversarial["steps"] > 0 and np.isfinite(adversarial["final"]["loss"])
    assert 0 < adversarial["final"]["adversarial_scale"]
    assert record["speed"]["decode_images_per_second"] > 0
    # The likelihood phase's weights made way for the second stage's decoder.
    assert record["second_stage"]["faces"] == 96
    assert sorted(path.name for path in run.iterdir()) == ["adversarial", "record.json",
                                                           "second_stage"]

    document = tmp_path / "speed.md"
    document.write_text("# Speed\n<!-- gpu-training:begin -->\nold\n<!-- gpu-training:end -->\n")
    reported = _script("report", str(run), "--doc", str(document))
    assert reported.returncode == 0, reported.stderr
    table = document.read_text()
    assert "old" not in table
    assert f"{record['speed']['decode_images_per_second']:,.0f} images/s" in table
    assert f"{adversarial['validation']['psnr']:.2f} dB" in table

    model_file = tmp_path / "gpu.keras"
    assembled = _script("assemble", str(run), "-o", str(model_file))
    assert assembled.returncode == 0, assembled.stderr
    from cvae.saving import load_model

    model = load_model(model_file, precision="mixed_bfloat16")
    assert model.second_stage_decoder is not None and model.discriminator is None
    assert model_file.with_suffix(".decoder.tflite").exists()
    samples = model.generate(4, seed=0)
    assert samples.shape == (4, 16, 16, 3) and np.isfinite(samples).all()
    validation = _read_pack(pack, "validation")
    reconstructions = np.clip(model.reconstruct(validation), 0.0, 1.0)
    # The same weights, the same bfloat16 arithmetic, another backend.
    assert np.mean(psnr(validation / 255.0, reconstructions)) == pytest.approx(
        adversarial["validation"]["psnr"], abs=0.05)


def test_fine_tunes_from_a_trained_first_stage(tmp_path):
    pytest.importorskip("jax")
    from cvae.config import get_preset
    from cvae.saving import load_model, save_model

    pack = _pack(tmp_path, count=40)
    config = get_preset("faces-v2").replace(image_size=16, filters=(8, 16), latent_dim=4,
                                            output_filters=4)
    # Another seed than the run's own (0), so fresh weights cannot pass for these.
    save_model(VAE(config, seed=7), tmp_path / "trained.keras")
    written = _script("weights", str(tmp_path / "trained.keras"), "-o", str(tmp_path / "start"))
    assert written.returncode == 0, written.stderr
    assert json.loads((tmp_path / "start" / "config.json").read_text())["config"]["filters"] \
        == [8, 16]

    # At a learning rate of zero the phase's checkpoint is the weights it started from.
    run = tmp_path / "run"
    trained = _script("train", str(pack), "--out", str(run),
                      "--initial-weights", str(tmp_path / "start"), "--learning-rate", "0",
                      "--likelihood-minutes", "0.05", "--adversarial-minutes", "0",
                      "--batch-size", "8", "--second-stage-epochs", "0", backend="jax")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    record = json.loads((run / "record.json").read_text())
    assert record["config"]["kl_warmup_steps"] == 0
    model = load_model(tmp_path / "trained.keras")
    started = VAE(config, seed=1, dtype="mixed_bfloat16")
    load_weights_in_parts(started.first_stage_variables, run / "likelihood")
    for original, loaded in zip(model.first_stage_weights(), started.first_stage_weights()):
        # Stored as float16, so rounded to float16.
        np.testing.assert_array_equal(original.astype(np.float16).astype(np.float32), loaded)
    validation = _read_pack(pack, "validation")
    reconstructions = np.clip(started.reconstruct(validation), 0.0, 1.0)
    assert np.mean(psnr(validation / 255.0, reconstructions)) == pytest.approx(
        record["initial"]["validation"]["psnr"], abs=0.05)


def test_weights_refuses_a_missing_model_in_one_line(tmp_path):
    result = _script("weights", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "out"))
    assert result.returncode != 0 and "no such model file" in result.stderr
    assert "Traceback" not in result.stderr


def test_assemble_refuses_bad_input_in_one_line(tmp_path):
    result = _script("assemble", str(tmp_path), "-o", str(tmp_path / "model.keras"))
    assert result.returncode != 0 and "no record.json" in result.stderr
    (tmp_path / "model.keras").write_text("")
    result = _script("assemble", str(tmp_path), "-o", str(tmp_path / "model.keras"))
    assert "exists (use --force" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("arguments, message", [
    (["--set", "filters"], "expected FIELD=VALUE"),
    (["--set", "filters=[8,"], "not JSON"),
    ([], "no such pack"),
    (["--initial-weights", "nowhere"], "no config.json"),
    (["--initial-weights", "nowhere", "--preset", "faces"], "comes with the weights"),
])
def test_train_refuses_bad_input_in_one_line(tmp_path, arguments, message):
    result = _script("train", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "run"),
                     *arguments, backend="jax")
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


# One adversarial step on either backend, from the same weights on the same
# batch, with the sampling noise set to zero and plain SGD for both optimizers
# (Adam's first step is about lr * sign(gradient), which would hide a wrong
# gradient's size): argv is the configuration (JSON), the weights, the images
# (.npy) and where to write the result.
_ONE_STEP = r"""
import json, sys
import keras
import numpy as np

from cvae.config import VAEConfig
from cvae.model import VAE
from cvae.saving import load_weights_in_parts, save_weights_in_parts

keras.random.normal = lambda shape, dtype=None, seed=None, **_: keras.ops.zeros(shape, dtype)
config, weights, images, out = sys.argv[1:]
model = VAE(VAEConfig.from_dict(json.loads(config)), seed=0, dtype="float32")
model.compile(optimizer=keras.optimizers.SGD(0.05))
adversarial = model.discriminator is not None
if adversarial:
    model.discriminator_optimizer = keras.optimizers.SGD(0.05)
    model.discriminator_optimizer.build(model.discriminator.trainable_variables)
load_weights_in_parts(model.weights, weights)
images = np.load(images)
if keras.backend.backend() == "jax":
    from cvae import jax_training

    record = jax_training.train_on_device(model, images, 1000.0, len(images), 0.05, adversarial,
                                          max_steps=1, flip=False, log=lambda line: None)
    terms = record["final"]
else:
    terms = {name: float(value) for name, value in model.train_on_batch(images, return_dict=True).items()}
save_weights_in_parts(model.weights, out)
with open(f"{out}/terms.json", "w") as file:
    json.dump(terms, file)
"""


@pytest.mark.parametrize("adversarial_weight", [1.0, 0.0])
def test_a_jax_step_is_the_tensorflow_step(tmp_path, adversarial_weight):
    pytest.importorskip("jax")
    from cvae.config import VAEConfig, get_preset

    settings = {**get_preset("faces-v2").to_dict(), "image_size": 16, "filters": [8, 16],
                "latent_dim": 4, "output_filters": 4, "discriminator_filters": [8, 16],
                "adversarial_weight": adversarial_weight, "adversarial_start_step": 0,
                "kl_warmup_steps": 0}
    import keras

    # Fixed initial weights: some draws leave the adversarial gradient at the
    # last kernel so small that the scale, their ratio, is ill-conditioned.
    keras.utils.set_random_seed(0)
    initial = VAE(VAEConfig.from_dict(settings), seed=0, dtype="float32")
    save_weights_in_parts(initial.weights, tmp_path / "initial")
    np.save(tmp_path / "images.npy", smooth_images(8, size=16))
    program = tmp_path / "one_step.py"
    program.write_text(_ONE_STEP)
    results = {}
    for backend in ("tensorflow", "jax"):
        out = tmp_path / backend
        environment = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPOSITORY),
                       "JAX_PLATFORMS": "cpu"}
        done = subprocess.run([sys.executable, str(program), json.dumps(settings),
                               str(tmp_path / "initial"), str(tmp_path / "images.npy"),
                               str(out)], capture_output=True, text=True, env=environment,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        model = VAE(VAEConfig.from_dict(settings), seed=0, dtype="float32")
        load_weights_in_parts(model.weights, out)
        results[backend] = (json.loads((out / "terms.json").read_text()),
                            [np.asarray(value) for value in model.get_weights()])
    (tf_terms, tf_weights), (jax_terms, jax_weights) = results["tensorflow"], results["jax"]
    names = ["loss", "reconstruction_loss", "kl_loss"]
    if adversarial_weight:
        names += ["adversarial_loss", "discriminator_loss", "adversarial_scale"]
    assert set(jax_terms) == set(names) == set(tf_terms)
    for name in names:
        # The scale is a ratio of two gradient norms, the adversarial one tiny
        # at the start (the ratio is about 20,000): the backends' float32
        # sums differ in its third or fourth digit.
        tolerance = 1e-2 if name == "adversarial_scale" else 1e-4
        assert jax_terms[name] == pytest.approx(tf_terms[name], rel=tolerance, abs=1e-6), name
    moved = 0
    for before, tf_value, jax_value in zip(initial.get_weights(), tf_weights, jax_weights):
        # Each tensor's update agrees to 3 % of its largest element: the
        # adversarial scale's difference (above) carries into it. A wrong
        # gradient or scale is off by far more (1.5 times the scale: 50 %).
        tf_update, jax_update = tf_value - before, jax_value - before
        largest = np.abs(tf_update).max()
        assert np.abs(jax_update - tf_update).max() <= 0.03 * largest + 1e-7
        moved += bool(largest > 0)
    # The step changed the weights (the VAE's and the discriminator's alike).
    assert moved > len(tf_weights) // 2
