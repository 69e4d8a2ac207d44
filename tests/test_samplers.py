"""Where sampled codes come from: the sampler names, the temperature, and the
ex-post Gaussian mixture (the second stage itself is in test_second_stage.py)."""

import numpy as np
import pytest

from cvae.errors import CvaeError
from cvae.sampling import samplers
from cvae.sampling.samplers import resolve_sampler, sample_latents

# Portable: tests/test_backends.py runs this module under JAX too.
pytestmark = pytest.mark.backends


def test_the_mixture_recovers_its_components_and_samples_follow_it():
    rng = np.random.default_rng(1)
    means = np.array([[-4.0, 0.0], [4.0, 1.0]])
    points = np.concatenate([rng.normal(means[0], [1.0, 0.5], (3000, 2)),
                             rng.normal(means[1], [0.5, 1.0], (1000, 2))])
    mixture = samplers.GaussianMixture.fit(points, components=2, seed=0)
    order = np.argsort(mixture.means[:, 0])
    np.testing.assert_allclose(mixture.means[order], means, atol=0.1)
    np.testing.assert_allclose(mixture.weights[order], [0.75, 0.25], atol=0.02)
    np.testing.assert_allclose(np.sqrt(np.diagonal(mixture.covariances[order], axis1=1, axis2=2)),
                               [[1.0, 0.5], [0.5, 1.0]], atol=0.06)
    drawn = mixture.sample(20000, seed=2)
    assert abs(np.mean(drawn[:, 0] > 0) - 0.25) < 0.015
    np.testing.assert_allclose(drawn[drawn[:, 0] < 0].mean(axis=0), means[0], atol=0.05)
    assert mixture.log_density(means).min() > mixture.log_density([[0.0, 8.0]])[0] + 10
    np.testing.assert_allclose(mixture.sample(5, seed=3), mixture.sample(5, seed=3))


def test_the_mixture_survives_a_round_trip_and_refuses_a_bad_file(tmp_path):
    mixture = samplers.GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]],
                                       [np.eye(2), 2 * np.eye(2)])
    mixture.save(tmp_path / "m.gmm.npz")
    loaded = samplers.GaussianMixture.load(tmp_path / "m.gmm.npz")
    np.testing.assert_array_equal(loaded.covariances, mixture.covariances)
    (tmp_path / "bad.gmm.npz").write_bytes(b"nonsense")
    with pytest.raises(Exception, match="cannot read the mixture"):
        samplers.GaussianMixture.load(tmp_path / "bad.gmm.npz")


def test_sampler_names_are_checked(first_stage):
    model, _ = first_stage
    with pytest.raises(CvaeError, match="no second stage"):
        resolve_sampler(model, "second-stage")
    with pytest.raises(CvaeError, match="unknown sampler"):
        resolve_sampler(model, "uniform")
    with pytest.raises(CvaeError, match="needs a mixture"):
        resolve_sampler(model, "gmm")
    assert resolve_sampler(model, "normal") == "prior"


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -1.0])
def test_temperature_must_be_finite_and_non_negative(first_stage, temperature):
    model, _ = first_stage
    with pytest.raises(ValueError, match="temperature"):
        sample_latents(model, 2, seed=0, temperature=temperature)
