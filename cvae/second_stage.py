"""The second-stage VAE (Dai & Wipf, "Diagnosing and enhancing VAE models",
ICLR 2019): a small VAE over the first stage's latent codes.

A first-stage VAE's aggregate posterior does not fill N(0, I): decoding
prior draws lands many of them where the decoder never trained, and they
come out as blotches instead of faces. The second stage learns that
aggregate posterior, so u ~ N(0, I) -> second-stage decoder -> z lands
where the first-stage decoder knows what to draw. Its decoder is stored
inside the first-stage model (`VAE.second_stage_decoder`), so a `.keras`
file samples well on its own; its encoder is only needed for training.
"""

import math

import keras
import numpy as np
from keras import layers, ops

from cvae import losses

DEFAULT_UNITS = (1024, 1024)
_INITIAL_LOG_SCALE = math.log(0.3)
_MIN_LOG_SCALE = math.log(1e-3)


def build_second_stage_decoder(latent_dim, units, name="second_stage_decoder"):
    """u -> z: the part of the second stage that sampling needs (float32)."""
    codes = keras.Input(shape=(latent_dim,), name="u")
    x = codes
    for width in units:
        x = layers.Dense(width, activation="relu", dtype="float32")(x)
    z = layers.Dense(latent_dim, dtype="float32", name="z")(x)
    return keras.Model(codes, z, name=name)


@keras.saving.register_keras_serializable(package="cvae")
class SecondStageVAE(keras.Model):
    """z -> (u_mean, u_log_var) -> u -> z': a Gaussian VAE with a learned
    scalar scale, trained with `fit` on first-stage posterior samples."""

    def __init__(self, latent_dim, units=DEFAULT_UNITS, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.units = tuple(int(u) for u in units)
        self.seed = seed
        codes = keras.Input(shape=(self.latent_dim,), name="z")
        x = codes
        for width in self.units:
            x = layers.Dense(width, activation="relu")(x)
        u_mean = layers.Dense(self.latent_dim, name="u_mean")(x)
        u_log_var = layers.Dense(self.latent_dim, name="u_log_var")(x)
        self.encoder = keras.Model(codes, [u_mean, u_log_var], name="second_stage_encoder")
        self.decoder = build_second_stage_decoder(self.latent_dim, self.units)
        self.log_scale = self.add_weight(shape=(), name="log_scale",
                                         initializer=keras.initializers.Constant(_INITIAL_LOG_SCALE))
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        import tensorflow as tf

        z_mean, z_log_var = data
        # A fresh posterior sample of the first stage every step: the second
        # stage learns q(z) = E_x q(z|x), the distribution sampling must hit.
        z = z_mean + ops.exp(0.5 * z_log_var) * keras.random.normal(
            ops.shape(z_mean), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            u_mean, u_log_var = self.encoder(z, training=True)
            u = u_mean + ops.exp(0.5 * u_log_var) * keras.random.normal(
                ops.shape(u_mean), seed=self.seed_generator)
            scale = ops.exp(ops.maximum(self.log_scale, _MIN_LOG_SCALE))
            loss = ops.mean(losses.reconstruction_loss(z, self.decoder(u, training=True),
                                                       "gaussian", scale)
                            + losses.kl_divergence(u_mean, u_log_var))
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def get_config(self):
        return {"name": self.name, "latent_dim": self.latent_dim, "units": self.units,
                "seed": self.seed}


def fit_second_stage(model, images, units=DEFAULT_UNITS, epochs=100, batch_size=256,
                     learning_rate=1e-3, seed=0, verbose=0, standardize=False):
    """Train a second stage on `model`'s codes of `images`; return a copy of
    `model` that carries its decoder (and samples through it by default).

    Time is about that of encoding the images once plus a few minutes of
    dense layers on one core for 10,000 images at the default size.
    """
    z_mean, z_log_var = model.encode(images)
    return fit_second_stage_on_codes(model, z_mean, z_log_var, units, epochs, batch_size,
                                     learning_rate, seed, verbose, standardize)


def fit_second_stage_on_codes(model, z_mean, z_log_var, units=DEFAULT_UNITS, epochs=100,
                              batch_size=256, learning_rate=1e-3, seed=0, verbose=0,
                              standardize=False):
    """`fit_second_stage` on codes already encoded (`model.encode`'s output),
    so that several second stages can be compared on the same codes."""
    trained = train_second_stage(z_mean, z_log_var, units, epochs, batch_size, learning_rate,
                                 seed, verbose, standardize)
    return with_second_stage(model, trained)


def with_second_stage(model, trained):
    """A copy of the first stage `model` that carries the `TrainedSecondStage`."""
    units = trained.units
    # A discriminator only trains the first stage; the combined model samples
    # and codes, so it leaves one behind (it stays in the training run).
    config = model.config.replace(second_stage_units=tuple(units), adversarial_weight=0.0)
    # The model's own class, so this module needs no import of cvae.model
    # (which builds on this one).
    combined = type(model)(config, seed=model.seed, dtype=model.dtype_policy.name)
    combined.set_first_stage_weights(model)
    combined.second_stage_decoder.set_weights(trained.decoder_weights)
    return combined


class TrainedSecondStage:
    """What `train_second_stage` returns: the weights of a
    `build_second_stage_decoder` network that maps u to codes in the first
    stage's own coordinates, and `scale`, the spread (per code dimension, in
    those coordinates) that the second stage's Gaussian leaves around them."""

    def __init__(self, units, decoder_weights, scale, noise_map=None):
        self.units = tuple(units)
        self.decoder_weights = decoder_weights
        self.scale = scale
        # (centre, lower) with match_moments: the decoder computes
        # decoder(centre + lower @ eps) of the network as trained.
        self.noise_map = noise_map


def train_second_stage(z_mean, z_log_var, units=DEFAULT_UNITS, epochs=100, batch_size=256,
                       learning_rate=1e-3, seed=0, verbose=0, standardize=False,
                       match_moments=False):
    """Train a `SecondStageVAE` on first-stage codes; a `TrainedSecondStage`.

    standardize: train on codes shifted and scaled to zero mean and unit
    variance in each dimension, and fold that map back into the decoder's
    last layer. The first stage's codes are neither centred nor equally
    spread (the shipped model's dimensions range from 0.16 to 1.5 in
    variance, with means up to 2.9), and the second stage's one learned
    scale would otherwise fit the widest dimensions and smear the narrow ones.

    match_moments: fold into the decoder's first layer the Gaussian with the
    mean and covariance of the second stage's own aggregate posterior q(u)
    on the training codes, so that sampled noise u ~ N(0, I) is mapped onto
    where the encoder put the codes (an ex-post fit of q(u), as Ghosh et al.
    2020 fit q(z)) instead of assuming the KL made q(u) exactly N(0, I).
    """
    import tensorflow as tf

    z_mean = np.asarray(z_mean, np.float64)
    z_log_var = np.asarray(z_log_var, np.float64)
    latent_dim = z_mean.shape[1]
    if standardize:
        # The aggregate posterior's moments: the means' spread plus the
        # posteriors' own variance.
        centre = z_mean.mean(axis=0)
        spread = np.sqrt(z_mean.var(axis=0) + np.exp(z_log_var).mean(axis=0))
        spread = np.maximum(spread, 1e-6)
    else:
        centre, spread = np.zeros(latent_dim), np.ones(latent_dim)
    keras.utils.set_random_seed(seed)
    second = SecondStageVAE(latent_dim, units, seed=seed)
    steps = epochs * math.ceil(len(z_mean) / batch_size)
    second.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(learning_rate, steps)))
    dataset = (tf.data.Dataset.from_tensor_slices((((z_mean - centre) / spread).astype(np.float32),
                                                   (z_log_var - 2 * np.log(spread)).astype(np.float32)))
               .shuffle(len(z_mean), seed=seed).batch(batch_size).prefetch(2))
    second.fit(dataset, epochs=epochs, verbose=verbose, shuffle=False)
    weights = second.decoder.get_weights()
    noise_map = None
    if match_moments:
        noise_map = _fitted_noise_map(second, (z_mean - centre) / spread)
        weights = _matched_first_layer(weights, *noise_map)
    # z = spread * (h @ kernel + bias) + centre, as one Dense layer.
    *hidden, kernel, bias = weights
    weights = [*hidden, (kernel * spread[None, :]).astype(np.float32),
               (bias * spread + centre).astype(np.float32)]
    scale = float(np.exp(max(float(second.log_scale.numpy()), _MIN_LOG_SCALE)))
    return TrainedSecondStage(units, weights, scale * spread, noise_map)


def _fitted_noise_map(second, z_mean):
    """(centre, lower): the mean of q(u) on the codes and the Cholesky factor
    of its covariance."""
    u_means, u_variances = [], []
    for start in range(0, len(z_mean), 1024):
        u_mean, u_log_var = second.encoder(z_mean[start:start + 1024].astype(np.float32),
                                           training=False)
        u_means.append(np.asarray(u_mean, np.float64))
        u_variances.append(np.exp(np.asarray(u_log_var, np.float64)))
    # The codes' own posterior spread is negligible beside their spread
    # across faces (the shipped model's largest posterior variance is 1e-3),
    # so the means stand for the first-stage posterior here.
    u_mean = np.concatenate(u_means)
    covariance = np.cov(u_mean, rowvar=False) + np.diag(np.concatenate(u_variances).mean(axis=0))
    lower = np.linalg.cholesky(covariance + 1e-9 * np.eye(len(covariance)))
    return u_mean.mean(axis=0), lower


def _matched_first_layer(weights, centre, lower):
    """The decoder's weights with u = centre + lower @ eps folded into its
    first Dense layer: eps @ (lower^T W) + (centre @ W + b)."""
    kernel, bias, *rest = weights
    return [(lower.T @ kernel).astype(np.float32), (centre @ kernel + bias).astype(np.float32),
            *rest]
