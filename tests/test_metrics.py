import math

import numpy as np
import pytest

from cvae.evaluation import metrics
from cvae.evaluation.baselines import PCA
from tests.helpers import smooth_images

# Numpy in and out, keras.ops inside: the same numbers on every backend.
pytestmark = pytest.mark.backends


def test_psnr_and_mse_match_a_hand_computation():
    images = np.full((2, 8, 8, 3), 0.5, np.float32)
    shifted = images + 0.1  # squared error 0.01 everywhere -> 20 dB
    np.testing.assert_allclose(metrics.mean_squared_error(images, shifted), [0.01, 0.01], rtol=1e-5)
    np.testing.assert_allclose(metrics.psnr(images, shifted), [20.0, 20.0], rtol=1e-5)


def test_ssim_is_one_for_identical_images_and_lower_for_noisy_ones():
    images = smooth_images(4).astype(np.float32) / 255
    noisy = np.clip(images + np.random.default_rng(0).normal(0, 0.1, images.shape), 0, 1)
    np.testing.assert_allclose(metrics.ssim(images, images), 1.0, atol=1e-5)
    assert np.all(metrics.ssim(images, noisy) < 0.9)


def test_downsample_averages_blocks():
    image = np.zeros((1, 4, 4, 1), np.float32)
    image[0, :2, :2] = 1.0
    np.testing.assert_allclose(metrics.downsample(image, 2)[0, :, :, 0], [[1, 0], [0, 0]])


def test_laplacian_pyramid_levels_and_flat_images():
    flat = np.full((2, 64, 64, 3), 0.3, np.float32)
    levels = metrics.laplacian_pyramid(flat)
    assert [level.shape[1] for level in levels] == [64, 32, 16]
    for detail in levels[:-1]:  # A flat image has no detail at any scale.
        np.testing.assert_allclose(detail, 0.0, atol=1e-5)
    np.testing.assert_allclose(levels[-1], 0.3, atol=1e-5)


def test_swd_is_near_zero_for_identical_sets_and_grows_with_a_shift():
    images = smooth_images(32, size=32, seed=1).astype(np.float32) / 255
    same_distribution = smooth_images(32, size=32, seed=2).astype(np.float32) / 255
    identical = metrics.swd(images, images)
    assert len(identical["levels"]) == 2  # 32 and 16 pixels.
    sampled = metrics.swd(images, same_distribution)["mean"]
    shifted = metrics.swd(images, np.clip(images + 0.2, 0, 1))["mean"]
    noisy = metrics.swd(images, images + np.random.default_rng(0).normal(0, 0.05, images.shape))
    assert identical["mean"] == pytest.approx(0.0, abs=1e-3)
    assert shifted > 2 * sampled
    assert noisy["levels"][0] > 2 * sampled


def test_sliced_wasserstein_of_a_translated_gaussian_is_the_projected_shift():
    rng = np.random.default_rng(0)
    points = rng.standard_normal((20000, 2)).astype(np.float32)
    # Moving every point by (3, 0) moves each projection by 3 cos(angle): E|3 cos| = 6 / pi.
    distance = metrics.sliced_wasserstein(points, points + np.float32([3.0, 0.0]), repeats=8)
    assert distance == pytest.approx(6 / math.pi, rel=0.05)


def test_active_units_and_kl_per_dimension():
    rng = np.random.default_rng(0)
    z_mean = np.stack([rng.normal(0, 1, 500), rng.normal(0, 0.05, 500), np.full(500, 2.0)], axis=1)
    assert metrics.active_units(z_mean) == 1  # Var 1 counts; var 0.0025 and 0 do not.
    z_log_var = np.zeros((500, 3))
    z_log_var[:, 2] = math.log(0.5)
    kl = metrics.kl_per_dimension(z_mean, z_log_var)
    # float32 on a backend without float64 (JAX's default).
    np.testing.assert_allclose(kl[0], 0.5 * np.mean(z_mean[:, 0] ** 2), rtol=1e-5)
    np.testing.assert_allclose(kl[2], 0.5 * (4 + 0.5 - 1 - math.log(0.5)), rtol=1e-5)


def test_frechet_distance_of_shifted_gaussians_is_the_squared_shift():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((5000, 4))
    assert metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, 2.0, 0.0, 0.0])
    assert metrics.frechet_distance(features, features + shift) == pytest.approx(5.0, rel=1e-6)
    # Fewer samples than features takes the small-SVD route; it must agree with the direct one.
    few_a, few_b = rng.standard_normal((6, 4)), rng.standard_normal((5, 4)) * 2
    wide_a, wide_b = np.pad(few_a, ((0, 0), (0, 6))), np.pad(few_b, ((0, 0), (0, 6)))
    assert metrics.frechet_distance(wide_a, wide_b) == pytest.approx(
        metrics.frechet_distance(few_a, few_b), rel=1e-9)


def test_bits_per_dimension_by_hand():
    # A uniform density on [0, 256/255) per sub-pixel: -log p = D log(255/256) ... -> 8 bits.
    dimensions = 10
    nll = dimensions * math.log(256 / 255)
    assert metrics.bits_per_dimension(nll, dimensions) == pytest.approx(8.0)


def test_pca_recovers_a_low_rank_set_and_samples_its_spread():
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((3, 8 * 8 * 3))
    codes = rng.standard_normal((200, 3)) * [3.0, 2.0, 1.0]
    images = (0.5 + 0.02 * codes @ basis).reshape(200, 8, 8, 3).astype(np.float32)
    pca = PCA(3).fit(images)
    np.testing.assert_allclose(pca.reconstruct(images), images, atol=1e-4)
    np.testing.assert_allclose(sorted(pca.variances, reverse=True), pca.variances)
    samples = pca.encode(pca.sample(20000, seed=1))
    np.testing.assert_allclose(samples.var(axis=0), pca.variances, rtol=0.05)
    with pytest.raises(ValueError, match="components"):
        PCA(300).fit(images)


def test_ssim_is_tensorflows_definition():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    images = rng.random((3, 24, 24, 3)).astype(np.float32)
    noisy = np.clip(images + 0.1 * rng.standard_normal(images.shape), 0, 1).astype(np.float32)
    expected = tf.image.ssim(images, noisy, max_val=1.0, filter_size=11).numpy()
    np.testing.assert_allclose(metrics.ssim(images, noisy), expected, atol=1e-5)
