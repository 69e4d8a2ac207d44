"""The adversarial term: a PatchGAN discriminator trained beside the VAE."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from cvae.model.saving import load_model
from cvae.model.vae import VAE
from cvae.training.runs import TrainOptions
from cvae.training.trainer import train
from tests.helpers import smooth_images


@pytest.fixture
def adversarial_config(tiny_config):
    return tiny_config.replace(adversarial_weight=0.5, adversarial_start_step=3,
                               discriminator_filters=(8, 16))


def _run_options(config, tmp_path, images):
    """A two-epoch training run of `config` (batch 8) on `images` smooth
    images, in tmp_path/run."""
    np.save(tmp_path / "faces.npy", (smooth_images(images) * 255).astype(np.uint8))
    overrides = {name: value for name, value in config.to_dict().items()
                 if name != "second_stage_units"}
    return TrainOptions(data=str(tmp_path / "faces.npy"), out=str(tmp_path / "run"), epochs=2,
                        batch_size=8, seed=0, tensorboard=False, verbose=0,
                        config_overrides=overrides)


def _discriminator_weights(model):
    return [np.array(weight) for weight in model.discriminator.trainable_weights]


def test_the_discriminator_waits_for_its_start_step_then_trains(adversarial_config,
                                                                tiny_images):
    model = VAE(adversarial_config, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    initial = _discriminator_weights(model)
    # Three steps of 16 images: all before the start step (steps 0, 1, 2).
    history = model.fit(tiny_images[:48], batch_size=16, epochs=1, verbose=0)
    assert history.history["adversarial_scale"] == [0.0]
    # The discriminator is not run before its start step, so it has no losses to average.
    assert history.history["adversarial_loss"] == history.history["discriminator_loss"] == [0.0]
    for before, after in zip(initial, _discriminator_weights(model)):
        np.testing.assert_array_equal(after, before)

    history = model.fit(tiny_images, validation_data=(tiny_images[:16],), batch_size=16,
                        epochs=2, verbose=0)
    assert set(history.history) == {
        "loss", "reconstruction_loss", "kl_loss", "adversarial_loss", "discriminator_loss",
        "adversarial_scale", "val_loss", "val_reconstruction_loss", "val_kl_loss",
        "val_adversarial_loss", "val_discriminator_loss"}
    assert all(scale > 0 and np.isfinite(scale) for scale in history.history["adversarial_scale"])
    assert any(not np.array_equal(before, after)
               for before, after in zip(initial, _discriminator_weights(model)))
    # The VAE's optimizer never steps the discriminator's weights.
    assert len(model.vae_weights) == (len(model.trainable_weights)
                                      - len(model.discriminator.trainable_weights))


def test_a_multi_scale_discriminator_judges_each_scale_with_its_own_weights(
        adversarial_config, tiny_images):
    from cvae.model.networks import build_patch_discriminator

    config = adversarial_config.replace(adversarial_start_step=0, discriminator_scales=2)
    grids = build_patch_discriminator(config)(tiny_images[:2])
    side = config.image_size // 4  # Two stride-2 convolutions.
    assert [tuple(grid.shape) for grid in grids] == [(2, side, side, 1),
                                                     (2, side // 2, side // 2, 1)]
    model = VAE(config, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    single = VAE(adversarial_config, seed=0).discriminator
    assert len(model.discriminator.trainable_weights) == 2 * len(single.trainable_weights)
    kernels = [weight for weight in model.discriminator.trainable_weights
               if weight.path.endswith("kernel")]
    initial = [np.array(kernel) for kernel in kernels]
    history = model.fit(tiny_images[:32], batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["discriminator_loss"][0])
    # Both scales' PatchGANs learn, not only the full-size one. (The logits'
    # biases may not: at the start the hinge's real and fake halves cancel.)
    assert all(not np.array_equal(before, np.array(kernel))
               for before, kernel in zip(initial, kernels))


def test_the_adversarial_term_changes_the_decoder_update(adversarial_config, tiny_images):
    def decoder_after_steps(config):
        model = VAE(config.replace(adversarial_start_step=0), seed=0)
        model.compile(optimizer=keras.optimizers.SGD(1e-3))
        model.fit(tiny_images[:16], batch_size=16, epochs=1, verbose=0, shuffle=False)
        return [np.array(weight) for weight in model.decoder.trainable_weights]

    keras.utils.set_random_seed(0)
    with_term = decoder_after_steps(adversarial_config)
    keras.utils.set_random_seed(0)
    without = decoder_after_steps(adversarial_config.replace(adversarial_weight=1e-9))
    assert any(not np.allclose(a, b) for a, b in zip(with_term, without))


def test_an_adversarial_model_saves_and_resumes_both_optimizers(adversarial_config, tmp_path,
                                                                monkeypatch):
    options = _run_options(adversarial_config, tmp_path, images=32)
    saved = {}
    real_save = VAE.save_weights

    def remember_steps(model, path, *args, **kwargs):
        saved["steps"] = (int(model.optimizer.iterations),
                          int(model.discriminator_optimizer.iterations))
        return real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(VAE, "save_weights", remember_steps)
    train(options)  # Two epochs of 4 steps (32 images, batch 8).
    assert saved["steps"] == (8, 8)
    first_run = saved["steps"]

    loaded = {}
    real_load = VAE.load_weights

    def report_steps(model, path, *args, **kwargs):
        real_load(model, path, *args, **kwargs)
        loaded["steps"] = (int(model.optimizer.iterations),
                           int(model.discriminator_optimizer.iterations))

    monkeypatch.setattr(VAE, "load_weights", report_steps)
    train(dataclasses.replace(options, epochs=3))  # Trains on from final/.
    assert loaded["steps"] == first_run
    assert saved["steps"] == (12, 12)

    model = load_model(tmp_path / "run" / "model.keras")
    assert model.discriminator is not None
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["config"]["adversarial_weight"] == 0.5


def test_an_adversarial_run_keeps_each_epochs_state_for_export(adversarial_config, tmp_path,
                                                               capsys):
    from cvae.cli.main import main

    run = tmp_path / "run"
    last, _ = train(_run_options(adversarial_config, tmp_path, images=16))
    first = load_model(run / "epochs" / "epoch_001.keras")
    for mine, theirs in zip(load_model(run / "epochs" / "epoch_002.keras").get_weights(),
                            last.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert any(not np.array_equal(a, b)
               for a, b in zip(first.get_weights(), last.get_weights()))

    exported = tmp_path / "epoch1.keras"
    assert main(["export", str(run), "-o", str(exported), "--checkpoint", "1",
                 "--no-litert"]) == 0
    for mine, theirs in zip(load_model(exported).get_weights(), first.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    record = json.loads(exported.with_suffix(".json").read_text())
    assert record["exported"] == {"checkpoint": "epoch", "epoch": 1}
    assert len(record["history"]) == 1 and record["epochs_run"] == 1
    capsys.readouterr()
    assert main(["export", str(run), "-o", str(tmp_path / "x.keras"), "--checkpoint", "3"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "has no state of epoch 3" in error[0]
    with pytest.raises(SystemExit):  # argparse: not a checkpoint.
        main(["export", str(run), "-o", str(tmp_path / "x.keras"), "--checkpoint", "raw"])
