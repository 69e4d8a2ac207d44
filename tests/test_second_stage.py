"""The second-stage VAE: trained on a first stage's codes, stored inside the
model, and the default sampler of a model that has one."""

import numpy as np

from cvae.model import VAE
from cvae.samplers import default_sampler, sample_latents
from cvae.saving import load_model, save_model
from cvae.second_stage import build_second_stage_decoder, fit_second_stage


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
    adversarial = VAE(model.config.replace(adversarial_weight=0.5), seed=0)
    adversarial.copy_weights_from(model)
    assert adversarial.discriminator is not None
    combined = fit_second_stage(adversarial, images, units=(8,), epochs=1, batch_size=16)
    assert combined.discriminator is None
    assert combined.config.adversarial_weight == 0.0
    np.testing.assert_allclose(combined.reconstruct(images[:2]), model.reconstruct(images[:2]),
                               atol=1e-6)


def test_standardized_codes_are_mapped_back_to_the_first_stage_coordinates():
    from cvae.second_stage import train_second_stage

    # Codes far from the origin and narrow in one dimension: the folded last
    # layer must put the samples back there, which two epochs on raw codes
    # cannot do.
    rng = np.random.default_rng(0)
    z_mean = np.array([40.0, -20.0, 0.0, 0.0]) + rng.normal(size=(256, 4)) * [0.1, 2.0, 1.0, 1.0]
    z_log_var = np.full_like(z_mean, -10.0)
    draws = {}
    for standardize in (True, False):
        trained = train_second_stage(z_mean, z_log_var, units=(16,), epochs=2, batch_size=32,
                                     standardize=standardize)
        model = build_second_stage_decoder(4, (16,))
        model.set_weights(trained.decoder_weights)
        draws[standardize] = np.asarray(model(rng.normal(size=(512, 4)).astype(np.float32)))
        assert trained.scale.shape == (4,) and (trained.scale > 0).all()
    np.testing.assert_allclose(draws[True].mean(axis=0)[:2], [40.0, -20.0], atol=1.0)
    assert abs(draws[False].mean(axis=0)[0] - 40.0) > 5.0


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


def test_matched_moments_fold_the_fitted_noise_map_into_the_first_layer():
    from cvae.second_stage import train_second_stage

    rng = np.random.default_rng(1)
    z_mean = rng.normal(size=(128, 4)) * [3.0, 1.0, 0.5, 1.0]
    z_log_var = np.full_like(z_mean, -10.0)
    options = dict(units=(8,), epochs=1, batch_size=32, seed=0)
    plain = train_second_stage(z_mean, z_log_var, **options)
    matched = train_second_stage(z_mean, z_log_var, match_moments=True, **options)
    centre, lower = matched.noise_map
    assert plain.noise_map is None and np.allclose(lower, np.tril(lower))
    networks = []
    for trained in (plain, matched):
        network = build_second_stage_decoder(4, (8,))
        network.set_weights(trained.decoder_weights)
        networks.append(network)
    eps = rng.normal(size=(16, 4))
    np.testing.assert_allclose(np.asarray(networks[1](eps.astype(np.float32))),
                               np.asarray(networks[0]((centre + eps @ lower.T).astype(np.float32))),
                               rtol=1e-4, atol=1e-4)
