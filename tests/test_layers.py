"""The custom layers: Sampling and SoftClamp, on whichever backend runs the tests."""

import keras
import numpy as np
import pytest
from keras import ops

from cvae.model.layers import Sampling, SoftClamp

# Portable: tests/test_backends.py runs this module under JAX too.
pytestmark = pytest.mark.backends


def _draw(layer, z_mean, z_log_var):
    return ops.convert_to_numpy(layer([z_mean, z_log_var]))


def test_samples_have_the_posterior_mean_and_variance():
    n = 20000
    z_mean = np.tile([[1.5, -2.0, 0.0]], (n, 1)).astype("float32")
    z_log_var = np.tile([[0.0, np.log(4.0), np.log(0.01)]], (n, 1)).astype("float32")
    z = _draw(Sampling(seed=1), z_mean, z_log_var)
    np.testing.assert_allclose(z.mean(axis=0), [1.5, -2.0, 0.0], atol=0.05)
    np.testing.assert_allclose(z.var(axis=0), [1.0, 4.0, 0.01], rtol=0.05)


def test_consecutive_compiled_calls_draw_fresh_noise():
    # Inside fit, each step is a compiled function (a jitted, stateless one on
    # JAX): the noise must still change from one step to the next.
    z_mean, z_log_var = keras.Input((8,)), keras.Input((8,))
    model = keras.Model([z_mean, z_log_var], Sampling(seed=3)([z_mean, z_log_var]))
    zeros = np.zeros((8, 8), "float32")
    draws = model.predict([zeros, zeros], batch_size=4, verbose=0)
    assert not np.allclose(draws[:4], draws[4:])  # One batch to the next,
    assert not np.allclose(draws, model.predict([zeros, zeros], batch_size=4, verbose=0))


def test_a_fixed_seed_reproduces_the_draws():
    zeros = np.zeros((4, 8), "float32")
    a, b = Sampling(seed=42), Sampling(seed=42)
    for _ in range(2):
        np.testing.assert_array_equal(_draw(a, zeros, zeros), _draw(b, zeros, zeros))
    assert not np.allclose(_draw(Sampling(seed=43), zeros, zeros),
                           _draw(Sampling(seed=42), zeros, zeros))


def test_config_round_trip():
    layer = Sampling(seed=5, name="s")
    clone = Sampling.from_config(layer.get_config())
    assert clone.seed == 5 and clone.name == "s"
    assert SoftClamp.from_config(SoftClamp(limit=7.0).get_config()).limit == 7.0


def test_soft_clamp_bounds_the_log_variance_and_keeps_a_gradient():
    layer = SoftClamp(limit=30.0)
    x = np.array([-1e4, -1.0, 0.0, 1.0, 1e4], "float32")
    y = ops.convert_to_numpy(layer(x))
    assert np.abs(y).max() <= 30.0
    np.testing.assert_allclose(y[1:4], [-1.0, 0.0, 1.0], atol=1e-3)
    # The slope, by central differences, near 1 where log-variances live.
    h = np.float32(1e-2)
    slope = (ops.convert_to_numpy(layer(x + h)) - ops.convert_to_numpy(layer(x - h))) / (2 * h)
    assert np.all(slope[1:4] > 0.99)


def test_a_bounded_soft_clamp_is_near_the_identity_below_its_bound_and_saves():
    layer = SoftClamp(upper=2.0)
    values = np.array([-40.0, -8.0, -1.0, 0.0, 1.0, 4.0, 1e6], np.float32)
    clamped = keras.ops.convert_to_numpy(layer(values))
    assert clamped.max() <= 2.0 and clamped.min() > -30.0
    assert abs(clamped[1] - (-8.0)) < 0.3  # Where posteriors live, little changed.
    assert np.all(np.diff(clamped[:-1]) > 0)  # Monotone below saturation: gradients flow.
    again = SoftClamp.from_config(layer.get_config())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(values)), clamped)
