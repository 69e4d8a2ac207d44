import math

import numpy as np
import pytest
from keras import ops

from cvae.model import losses

# Portable: tests/test_backends.py runs this module under JAX too.
pytestmark = pytest.mark.backends


def test_kl_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(0)
    z_mean = np.array([[0.5, -1.0, 2.0]])
    z_log_var = np.array([[-1.0, 0.5, 0.0]])
    std = np.exp(0.5 * z_log_var)
    z = z_mean + std * rng.standard_normal((400000, 3))
    log_q = -0.5 * (((z - z_mean) / std) ** 2 + z_log_var + math.log(2 * math.pi))
    log_p = -0.5 * (z ** 2 + math.log(2 * math.pi))
    monte_carlo = np.mean(np.sum(log_q - log_p, axis=1))
    closed_form = float(losses.kl_divergence(z_mean, z_log_var)[0])
    assert closed_form == pytest.approx(monte_carlo, abs=0.02)
    assert float(losses.kl_divergence(np.zeros((1, 3)), np.zeros((1, 3)))[0]) == 0.0


# One image of two pixels, one channel: x = (0.2, 1.0), reconstruction = (0.5, 0.75).
X = np.array([0.2, 1.0], "float32").reshape(1, 1, 2, 1)
R = np.array([0.5, 0.75], "float32").reshape(1, 1, 2, 1)


def test_gaussian_negative_log_likelihood_by_hand():
    sigma = 0.5
    by_hand = sum(0.5 * ((x - r) / sigma) ** 2 + math.log(sigma) + 0.5 * math.log(2 * math.pi)
                  for x, r in [(0.2, 0.5), (1.0, 0.75)])
    value = float(losses.reconstruction_loss(X, R, "gaussian", sigma)[0])
    assert value == pytest.approx(by_hand, rel=1e-6)


def test_l1_is_the_laplace_negative_log_likelihood():
    b = 0.25
    by_hand = (0.3 + 0.25) / b + 2 * math.log(2 * b)
    assert float(losses.reconstruction_loss(X, R, "l1", b)[0]) == pytest.approx(by_hand, rel=1e-6)


def test_bernoulli_is_binary_cross_entropy():
    by_hand = -(0.2 * math.log(0.5) + 0.8 * math.log(0.5)) - math.log(0.75)
    assert float(losses.reconstruction_loss(X, R, "bernoulli")[0]) == pytest.approx(by_hand, rel=1e-6)


def test_losses_sum_over_pixels_per_image():
    batch = np.concatenate([X, X])
    value = losses.reconstruction_loss(batch, np.concatenate([R, X]), "gaussian", 1.0)
    assert value.shape == (2,)
    assert float(value[1]) == pytest.approx(2 * (0.5 * math.log(2 * math.pi)), rel=1e-6)


def test_calibrated_scales_are_the_maximum_likelihood_ones():
    assert float(losses.calibrated_scale(X, R, "gaussian")) == pytest.approx(
        math.sqrt((0.3 ** 2 + 0.25 ** 2) / 2), rel=1e-6)
    assert float(losses.calibrated_scale(X, R, "l1")) == pytest.approx(0.275, rel=1e-6)
    with pytest.raises(ValueError):
        losses.calibrated_scale(X, R, "bernoulli")


def test_kl_warmup_ramps_linearly_to_beta():
    assert float(losses.kl_weight(0, 2.0, 0)) == 2.0
    assert float(losses.kl_weight(0, 2.0, 4)) == pytest.approx(0.5)
    assert float(losses.kl_weight(1, 2.0, 4)) == pytest.approx(1.0)
    assert float(losses.kl_weight(100, 2.0, 4)) == pytest.approx(2.0)


def test_hinge_losses_by_hand():
    # One image, two patches: real logits (2, 0.5), reconstructed (-0.5, -3).
    real = np.array([2.0, 0.5], "float32").reshape(1, 1, 2, 1)
    fake = np.array([-0.5, -3.0], "float32").reshape(1, 1, 2, 1)
    # Real: relu(1 - 2) = 0, relu(1 - 0.5) = 0.5; fake: relu(1 - 0.5) = 0.5, relu(1 - 3) = 0.
    assert float(losses.discriminator_hinge_loss(real, fake)[0]) == pytest.approx(0.25 + 0.25)
    assert float(losses.generator_adversarial_loss(fake)[0]) == pytest.approx(1.75)


def test_band_energy_gap_measures_missing_detail_not_misplaced_detail():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)

    def gap(other):
        return ops.convert_to_numpy(losses.band_energy_gap(images, other))

    np.testing.assert_allclose(gap(images), 0.0, atol=1e-6)
    # The same detail elsewhere (the image mirrored) has the same energy per level.
    np.testing.assert_allclose(gap(images[:, :, ::-1, :].copy()), 0.0, atol=1e-3)
    # Blurring thins out the fine levels: the more, the larger the gap.
    blurred_once = (images + np.roll(images, 1, axis=1) + np.roll(images, 1, axis=2)) / 3
    blurred_more = (blurred_once + np.roll(blurred_once, 1, axis=1)
                    + np.roll(blurred_once, 1, axis=2)) / 3
    assert np.all(gap(blurred_more) > gap(blurred_once)) and np.all(gap(blurred_once) > 0.1)


def test_face_weights_move_the_reconstruction_term_toward_the_face():
    from cvae.data.align import face_region_weights

    weights = face_region_weights(32, 2.0)
    assert weights.shape == (32, 32) and weights.mean() == pytest.approx(1.0, rel=1e-5)
    assert weights[16, 16] > 2.5 * weights[0, 0]  # The centre of the face against a corner.
    images = np.zeros((1, 32, 32, 3), np.float32)
    in_the_corner, on_the_face = images.copy(), images.copy()
    in_the_corner[0, :4, :4] = 0.5
    on_the_face[0, 14:18, 14:18] = 0.5
    def loss(reconstructions, pixel_weights):
        return float(losses.reconstruction_loss(images, reconstructions, "gaussian", 0.1,
                                                pixel_weights)[0])
    # Unweighted, the two errors cost the same; weighted, the face's costs more,
    # and an error-free image costs the same either way (weights of mean 1).
    assert loss(in_the_corner, None) == pytest.approx(loss(on_the_face, None))
    exact = loss(images, weights)
    assert loss(on_the_face, weights) - exact > 2.5 * (loss(in_the_corner, weights) - exact)
    assert loss(images, weights) == pytest.approx(loss(images, None), rel=1e-5)
