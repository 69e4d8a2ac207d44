"""The custom layers: Sampling and SoftClamp."""

import numpy as np
import tensorflow as tf

from cvae.layers import Sampling, SoftClamp


def test_samples_have_the_posterior_mean_and_variance():
    n = 20000
    z_mean = np.tile([[1.5, -2.0, 0.0]], (n, 1)).astype("float32")
    z_log_var = np.tile([[0.0, np.log(4.0), np.log(0.01)]], (n, 1)).astype("float32")
    z = Sampling(seed=1)([z_mean, z_log_var]).numpy()
    np.testing.assert_allclose(z.mean(axis=0), [1.5, -2.0, 0.0], atol=0.05)
    np.testing.assert_allclose(z.var(axis=0), [1.0, 4.0, 0.01], rtol=0.05)


def test_consecutive_compiled_calls_draw_fresh_noise():
    # Inside fit, the train step is a compiled function: the noise must still
    # change from one step to the next.
    layer = Sampling(seed=3)
    step = tf.function(lambda m, v: layer([m, v]))
    zeros = tf.zeros((4, 8))
    first, second = step(zeros, zeros).numpy(), step(zeros, zeros).numpy()
    assert not np.allclose(first, second)


def test_a_fixed_seed_reproduces_the_draws():
    zeros = tf.zeros((4, 8))
    a, b = Sampling(seed=42), Sampling(seed=42)
    for _ in range(2):
        np.testing.assert_array_equal(a([zeros, zeros]).numpy(), b([zeros, zeros]).numpy())
    assert not np.allclose(Sampling(seed=43)([zeros, zeros]).numpy(),
                           Sampling(seed=42)([zeros, zeros]).numpy())


def test_config_round_trip():
    layer = Sampling(seed=5, name="s")
    clone = Sampling.from_config(layer.get_config())
    assert clone.seed == 5 and clone.name == "s"
    assert SoftClamp.from_config(SoftClamp(limit=7.0).get_config()).limit == 7.0


def test_soft_clamp_bounds_the_log_variance_and_keeps_a_gradient():
    x = tf.constant([-1e4, -1.0, 0.0, 1.0, 1e4])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = SoftClamp(limit=30.0)(x)
    assert float(tf.reduce_max(tf.abs(y))) <= 30.0
    np.testing.assert_allclose(y.numpy()[1:4], [-1.0, 0.0, 1.0], atol=1e-3)
    assert np.all(tape.gradient(y, x).numpy()[1:4] > 0.99)


def test_a_bounded_soft_clamp_is_near_the_identity_below_its_bound_and_saves():
    import keras
    import numpy as np

    from cvae.layers import SoftClamp

    layer = SoftClamp(upper=2.0)
    values = np.array([-40.0, -8.0, -1.0, 0.0, 1.0, 4.0, 1e6], np.float32)
    clamped = keras.ops.convert_to_numpy(layer(values))
    assert clamped.max() <= 2.0 and clamped.min() > -30.0
    assert abs(clamped[1] - (-8.0)) < 0.3  # Where posteriors live, little changed.
    assert np.all(np.diff(clamped[:-1]) > 0)  # Monotone below saturation: gradients flow.
    again = SoftClamp.from_config(layer.get_config())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(values)), clamped)
