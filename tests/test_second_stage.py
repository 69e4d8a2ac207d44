"""The second-stage VAE: trained on a first stage's codes, stored inside the
model, and the default sampler of a model that has one."""

import numpy as np
import pytest

from cvae.model.saving import load_model, save_model
from cvae.model.second_stage import build_second_stage_decoder, fit_second_stage
from cvae.model.vae import VAE
from cvae.sampling.samplers import default_sampler, sample_latents

# Its objective is a compute_loss, which Keras's own steps train on every backend.
pytestmark = pytest.mark.backends


def test_second_stage_is_stored_in_the_model_and_sampled_by_default(first_stage, tmp_path):
    model, images = first_stage
    assert default_sampler(model) == "prior"
    combined = fit_second_stage(model, images, units=(16, 16), epochs=3, batch_size=16)
    assert combined.config.second_stage_units == (16, 16)
    assert default_sampler(combined) == "second-stage"
    # The first stage is unchanged.
    np.testing.assert_allclose(combined.reconstruct(images[:4]), model.reconstruct(images[:4]),
                               atol=1e-6)
    # Second-stage codes differ from the raw prior's draws with the same seed.
    through = sample_latents(combined, 5, seed=3)
    raw = sample_latents(combined, 5, seed=3, sampler="prior")
    assert through.shape == raw.shape == (5, 4)
    assert not np.allclose(through, raw)
    path = tmp_path / "with_second_stage.keras"
    save_model(combined, path)
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.generate(4, seed=1), combined.generate(4, seed=1), atol=1e-6)
    np.testing.assert_allclose(sample_latents(loaded, 5, seed=3), through, atol=1e-6)


def test_the_second_stage_command_writes_a_model_that_samples_through_it(tmp_path, capsys):
    from cvae.cli import main
    from tests.helpers import TINY, write_image_folder

    folder = write_image_folder(tmp_path / "faces", n=16)
    first = tmp_path / "first.keras"
    save_model(VAE(TINY, seed=0), first)
    out = tmp_path / "second.keras"
    command = ["second-stage", "--model", str(first), "--data", str(folder), "-o", str(out),
               "--epochs", "2", "--units", "8,8"]
    assert main(command) == 0
    model = load_model(out)
    assert model.config.second_stage_units == (8, 8)
    assert default_sampler(model) == "second-stage"
    assert main(command) == 1  # No silent overwrite.
    assert "exists (use --force to overwrite)" in capsys.readouterr().err
    assert main(["generate", "-n", "2", "--model", str(out), "-o", str(tmp_path / "g.png")]) == 0
    assert main(["generate", "-n", "2", "--model", str(out), "--sampler", "prior",
                 "-o", str(tmp_path / "p.png")]) == 0


def test_the_combined_model_leaves_a_first_stage_discriminator_behind(first_stage):
    model, images = first_stage
    adversarial = VAE(model.config.replace(adversarial_weight=0.5, adversarial_start_step=3,
                                           discriminator_scales=2), seed=0)
    adversarial.copy_weights_from(model)
    assert adversarial.discriminator is not None
    combined = fit_second_stage(adversarial, images, units=(8,), epochs=1, batch_size=16)
    assert combined.discriminator is None
    # Its settings go with it: the combined model's first stage is the plain one's.
    assert combined.config.replace(second_stage_units=(), second_stage_noise=0.0) == model.config
    np.testing.assert_allclose(combined.reconstruct(images[:2]), model.reconstruct(images[:2]),
                               atol=1e-6)


def test_a_retrained_second_stage_keeps_the_codec_fingerprint_and_its_files(first_stage):
    from cvae.codec import codec_for, weights_sha256

    model, images = first_stage
    combined = fit_second_stage(model, images, units=(8,), epochs=1, batch_size=16)
    assert weights_sha256(combined) == weights_sha256(model)
    packed = codec_for(model).compress_batch(images[:2], mode="float16")
    np.testing.assert_array_equal(codec_for(combined).decompress_batch(packed),
                                  codec_for(model).decompress_batch(packed))
    # Another first stage is another model.
    other = VAE(model.config, seed=1)
    assert weights_sha256(other) != weights_sha256(model)


def test_the_matched_decoder_maps_noise_through_q_u_and_sampling_adds_its_spread(first_stage):
    from cvae.model.second_stage import train_second_stage, with_second_stage

    rng = np.random.default_rng(1)
    z_mean = rng.normal(size=(128, 4)) * [3.0, 1.0, 0.5, 1.0]
    trained = train_second_stage(z_mean, np.full_like(z_mean, -10.0), units=(8,), epochs=1,
                                 batch_size=32)
    centre, lower = trained.noise_map
    assert np.allclose(lower, np.tril(lower)) and trained.scale > 0
    as_trained, matched = build_second_stage_decoder(4, (8,)), build_second_stage_decoder(4, (8,))
    as_trained.set_weights(trained.decoder_weights(match_moments=False))
    matched.set_weights(trained.decoder_weights())
    eps = rng.normal(size=(16, 4))
    np.testing.assert_allclose(np.asarray(matched(eps.astype(np.float32))),
                               np.asarray(as_trained((centre + eps @ lower.T).astype(np.float32))),
                               rtol=1e-4, atol=1e-4)

    # Sampling decodes the same u with or without the noise, then adds
    # Gaussian noise of the learned spread (without the codes' spread matched,
    # whose gain depends on the noise).
    model, _ = first_stage
    noisy = with_second_stage(model, trained, match_codes=False)
    quiet = with_second_stage(model, trained, with_noise=False, match_codes=False)
    assert noisy.config.second_stage_noise == trained.scale and quiet.config.second_stage_noise == 0
    difference = sample_latents(noisy, 4000, seed=5) - sample_latents(quiet, 4000, seed=5)
    assert abs(difference.std() / trained.scale - 1) < 0.05
    # ... drawn independently of u (the raw prior's draw for the same seed).
    u = sample_latents(quiet, 4000, seed=5, sampler="prior")
    assert np.abs(np.corrcoef(difference.T, u.T)[:4, 4:]).max() < 0.1
    np.testing.assert_allclose(sample_latents(noisy, 8, seed=5, temperature=0.0),
                               sample_latents(quiet, 8, seed=5, temperature=0.0), atol=1e-6)


def test_matching_the_codes_spread_gives_samples_the_training_codes_mean_and_variance(
        first_stage):
    from cvae.model.second_stage import train_second_stage, with_second_stage

    model, _ = first_stage
    latent_dim = model.config.latent_dim
    rng = np.random.default_rng(2)
    z_mean = rng.normal(size=(512, latent_dim)) * np.linspace(0.3, 3.0, latent_dim) + 1.0
    z_log_var = np.full_like(z_mean, np.log(0.04))
    trained = train_second_stage(z_mean, z_log_var, units=(16,), epochs=2, batch_size=64)
    mean, variance = trained.code_moments  # Of q(z): the means' spread plus the posterior's.
    np.testing.assert_allclose(mean, z_mean.mean(axis=0))
    np.testing.assert_allclose(variance, z_mean.var(axis=0) + 0.04)
    # The default sampler hits them, its own noise included (other draws than
    # the ones the gain was measured on).
    drawn = sample_latents(with_second_stage(model, trained), 20000, seed=3)
    assert np.all(np.abs(drawn.mean(axis=0) - mean) < 0.05 * np.sqrt(variance))
    np.testing.assert_allclose(drawn.var(axis=0), variance, rtol=0.05)
    # A second stage trained for two epochs spreads its codes otherwise.
    unmatched = sample_latents(with_second_stage(model, trained, match_codes=False), 20000,
                               seed=3)
    assert np.abs(unmatched.var(axis=0) / variance - 1).max() > 0.2


def test_the_second_stage_command_copies_the_first_stage_codec_table(tmp_path):
    from cvae.cli import main
    from cvae.codec import load_codec, table_path
    from tests.helpers import tiny_model_file, write_image_folder

    folder = write_image_folder(tmp_path / "faces", n=16)
    first = tiny_model_file(tmp_path)
    out = tmp_path / "second.keras"
    assert main(["second-stage", "--model", str(first), "--data", str(folder), "-o", str(out),
                 "--epochs", "1", "--units", "8", "--kl-weight", "0.5"]) == 0
    assert table_path(out).read_bytes() == table_path(first).read_bytes()
    # ... and it is valid there: the entropy mode works with the new model.
    assert load_codec(out, runtime="keras").table is not None


def test_the_kl_weight_changes_what_the_second_stage_learns():
    from cvae.model.second_stage import train_second_stage

    z_mean = np.random.default_rng(2).normal(size=(64, 4))
    # Long and fast enough for the term to show (5 epochs at 1e-3 moved q(u) by a tenth of
    # a percent either way).
    trained = [train_second_stage(z_mean, np.full_like(z_mean, -10.0), units=(8,), epochs=40,
                                  batch_size=32, learning_rate=1e-2, kl_weight=weight)
               for weight in (0.0, 1.0)]
    # The KL term pulls the encoder's q(u) towards N(0, I); without it, it goes its own way.
    lower_without, lower_with = trained[0].noise_map[1], trained[1].noise_map[1]
    assert not np.allclose(lower_without, lower_with, rtol=0.01)
