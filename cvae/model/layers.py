"""Custom layers, registered so a saved model loads in Keras safe mode."""

import keras
from keras import ops

# exp(0.5 * 30) is about 3e6: far beyond any useful posterior spread, and far
# from overflow even if a caller evaluates it in float16.
LOG_VARIANCE_LIMIT = 30.0
# A bounded posterior (VAEConfig.bounded_posterior): the means within
# +-MEAN_LIMIT (the codec clamps at 8 prior standard deviations anyway) and
# the log-variance below LOG_VARIANCE_UPPER (a posterior wider than the
# prior, log-variance 0, is never of use).
MEAN_LIMIT = 10.0
LOG_VARIANCE_UPPER = 2.0


@keras.saving.register_keras_serializable(package="cvae")
class Sampling(keras.layers.Layer):
    """Reparameterised draw z = z_mean + exp(0.5 * z_log_var) * epsilon.

    The layer owns its `SeedGenerator`, so each call (each training step)
    draws fresh noise, and a seed makes a whole run reproducible.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), dtype=z_mean.dtype,
                                      seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="cvae")
class SoftClamp(keras.layers.Layer):
    """limit * tanh(x / limit): a smooth bound that never zeroes the gradient,
    and, with `upper`, also upper - softplus(upper - x) on top: a bound above
    that is nearly the identity well below it.

    Applied to the encoder's log-variance so exp() can neither overflow nor
    underflow, however far a bad batch pushes the raw output. In a bounded
    posterior (VAEConfig.bounded_posterior) the log-variance's clamp also has
    `upper`, and the means get one of their own (limit MEAN_LIMIT).
    """

    def __init__(self, limit=LOG_VARIANCE_LIMIT, upper=None, **kwargs):
        super().__init__(**kwargs)
        self.limit = float(limit)
        self.upper = None if upper is None else float(upper)

    def call(self, inputs):
        clamped = self.limit * ops.tanh(inputs / self.limit)
        if self.upper is not None:
            clamped = self.upper - ops.softplus(self.upper - clamped)
        return clamped

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "limit": self.limit, "upper": self.upper}
