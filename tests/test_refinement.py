"""Refining codes against the decoder (cvae.model.refinement) on a tiny trained model."""

import numpy as np
import pytest
from keras import ops

from cvae.codec import Codec
from cvae.evaluation.evaluate import evaluate
from cvae.model.losses import band_energy_gap
from cvae.model.refinement import refine_codes

# The descent is keras.ops with each backend's gradient: tested on each.
pytestmark = pytest.mark.backends


def _map_objective(model, images, codes):
    """-log p(x | z) - log p(z) up to a constant, per image."""
    reconstructions = model.decoder(codes, training=False)
    likelihood = ops.convert_to_numpy(model.reconstruction_term(images, reconstructions))
    return likelihood + 0.5 * np.sum(np.square(codes), axis=1)


def test_refined_codes_lower_the_objective_they_descend(first_stage):
    model, images = first_stage
    floats = images[:8].astype(np.float32) / 255
    z_mean, _ = model.encode(floats)
    refined = refine_codes(model, floats, z_mean, steps=20)
    assert refined.shape == z_mean.shape and refined.dtype == np.float32
    before, after = _map_objective(model, floats, z_mean), _map_objective(model, floats, refined)
    assert np.all(after < before)
    # No steps: the encoder's code, unchanged.
    np.testing.assert_array_equal(refine_codes(model, floats, z_mean, steps=0), z_mean)
    with pytest.raises(ValueError):
        refine_codes(model, floats, z_mean, steps=-1)


def test_the_texture_term_keeps_the_pyramid_levels_energy(first_stage):
    model, images = first_stage
    floats = images[:8].astype(np.float32) / 255
    z_mean, _ = model.encode(floats)
    weight = 1.0
    plain = refine_codes(model, floats, z_mean, steps=20, texture_weight=0.0)
    textured = refine_codes(model, floats, z_mean, steps=20, texture_weight=weight)

    def gap(codes):
        return ops.convert_to_numpy(band_energy_gap(floats, model.decoder(codes)))

    def objective(codes):
        return _map_objective(model, floats, codes) + weight * 0.5 * floats[0].size * gap(codes)

    # It descends its own objective, which plain refinement does not look at.
    # (Whether it keeps more detail is measured on the shipped model by
    # research/refinement/refinement_study.py: this tiny decoder makes almost none.)
    assert np.all(objective(textured) < objective(z_mean))
    assert not np.allclose(textured, plain)


def test_a_code_does_not_depend_on_the_batch_it_was_refined_in(first_stage):
    model, images = first_stage
    together, _ = model.encode(images[:6], refine_steps=5)
    alone, _ = model.encode(images[2:3], refine_steps=5)
    np.testing.assert_allclose(together[2:3], alone, atol=1e-4)


def test_refined_reconstructions_are_closer_and_evaluate_reports_them(first_stage):
    model, images = first_stage
    floats = images.astype(np.float32) / 255
    plain = model.reconstruct(images)
    refined = model.reconstruct(images, refine_steps=20)
    assert np.mean(np.square(refined - floats)) < np.mean(np.square(plain - floats))
    results = evaluate(model, images, iwae_samples=2, log=lambda message: None, refine_steps=20)
    assert results["refined"]["steps"] == 20
    assert results["refined"]["reconstruction"]["psnr"] > results["reconstruction"]["psnr"]
    assert "refined" not in evaluate(model, images, iwae_samples=2, log=lambda message: None)
    # Evaluate refines the means it already has; the same as encoding with refinement.
    z_mean, _ = model.encode(images)
    expected = model.decode(model.encode(images, refine_steps=20)[0])
    np.testing.assert_allclose(model.decode(model.refine(images, z_mean, 20)), expected,
                               atol=1e-5)
    assert results["refined"]["reconstruction"]["psnr"] == pytest.approx(
        10 * np.log10(1 / np.mean(np.square(expected - floats), axis=(1, 2, 3))).mean(), abs=1e-3)


def test_the_codec_quantizes_refined_codes(first_stage):
    model, images = first_stage
    plain, refined = Codec(model), Codec(model, refine_steps=5)
    np.testing.assert_allclose(refined.encode(images[:4]),
                               model.encode(images[:4], refine_steps=5)[0])
    assert not np.allclose(refined.encode(images[:4]), plain.encode(images[:4]))
    files = refined.compress_batch(images[:4], mode="float16")
    # The file format and the decoder are unchanged: any codec of the model decodes it.
    assert plain.decompress_batch(files).shape == images[:4].shape
