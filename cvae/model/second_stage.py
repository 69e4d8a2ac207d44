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

from cvae.batching import batches
from cvae.model import losses
from cvae.model.config import SECOND_STAGE_KL_WEIGHT

DEFAULT_UNITS = (1024, 1024)
_INITIAL_LOG_SCALE = math.log(0.3)
_MIN_LOG_SCALE = math.log(1e-3)
# Noise draws through the trained decoder that measure its codes' spread
# (`_matched_to_codes`): enough for each dimension's variance to about 1%.
_CALIBRATION_DRAWS = 20000


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

    def __init__(self, latent_dim, units=DEFAULT_UNITS, seed=None, kl_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.units = tuple(int(u) for u in units)
        self.seed = seed
        self.kl_weight = float(kl_weight)
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

    # The objective lives in `compute_loss`, as the VAE's does, so Keras's
    # own train step differentiates it on every backend.

    def call(self, posteriors, training=False):
        """A batch of first-stage posteriors (z_mean, z_log_var) -> a fresh
        sample z of each (the second stage learns q(z) = E_x q(z|x), the
        distribution sampling must hit), its posterior (u_mean, u_log_var)
        and the decoder's reconstruction of a sample u of it."""
        z_mean, z_log_var = posteriors
        z = z_mean + ops.exp(0.5 * z_log_var) * keras.random.normal(
            ops.shape(z_mean), seed=self.seed_generator)
        u_mean, u_log_var = self.encoder(z, training=training)
        u = u_mean + ops.exp(0.5 * u_log_var) * keras.random.normal(
            ops.shape(u_mean), seed=self.seed_generator)
        return {"z": z, "u_mean": u_mean, "u_log_var": u_log_var,
                "reconstruction": self.decoder(u, training=training)}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The negative ELBO of the codes, per code, averaged over the batch."""
        scale = ops.exp(ops.maximum(self.log_scale, _MIN_LOG_SCALE))
        loss = ops.mean(losses.reconstruction_loss(y_pred["z"], y_pred["reconstruction"],
                                                   "gaussian", scale)
                        + self.kl_weight * losses.kl_divergence(y_pred["u_mean"],
                                                                y_pred["u_log_var"]))
        self.loss_tracker.update_state(loss, sample_weight=ops.shape(y_pred["z"])[0])
        return loss

    def get_config(self):
        return {"name": self.name, "latent_dim": self.latent_dim, "units": self.units,
                "seed": self.seed, "kl_weight": self.kl_weight}


def fit_second_stage(model, images, units=DEFAULT_UNITS, epochs=100, batch_size=256,
                     learning_rate=1e-3, seed=0, verbose=0, kl_weight=SECOND_STAGE_KL_WEIGHT):
    """Train a second stage on `model`'s codes of `images`; return a copy of
    `model` that carries its decoder (and samples through it by default).

    Time is about that of encoding the images once plus about ten minutes of
    dense layers on one core for 30,000 images at the default size.
    """
    z_mean, z_log_var = model.encode(images)
    return with_second_stage(model, train_second_stage(z_mean, z_log_var, units, epochs,
                                                       batch_size, learning_rate, seed, verbose,
                                                       kl_weight))


def with_second_stage(model, trained, match_moments=True, with_noise=True, match_codes=True):
    """A copy of the first stage `model` that carries the `TrainedSecondStage`:
    its decoder with q(u)'s fitted Gaussian folded in (match_moments) or as
    trained, its codes rescaled to the training codes' mean and variance
    (match_codes) or not, sampled with its noise
    (`VAEConfig.second_stage_noise`) or without. The defaults are the shipped
    model's choice (research/model/notebook.md, "Second-stage variants" and
    "Session 17")."""
    # A discriminator only trains the first stage; the combined model samples
    # and codes, so it leaves one behind (it stays in the training run).
    noise = trained.scale if with_noise else 0.0
    config = model.config.without_discriminator().replace(
        second_stage_units=trained.units, second_stage_noise=noise)
    # The model's own class, so this module needs no import of cvae.model
    # (which builds on this one).
    combined = type(model)(config, seed=model.seed, dtype=model.dtype_policy.name)
    combined.set_first_stage_weights(model)
    combined.second_stage_decoder.set_weights(
        trained.decoder_weights(match_moments, match_codes, noise))
    return combined


class TrainedSecondStage:
    """What `train_second_stage` returns.

    `weights`: the trained `build_second_stage_decoder` network's weights;
    `noise_map`: (centre, lower), the mean of the second stage's aggregate
    posterior q(u) on its training codes and the Cholesky factor of its
    covariance; `scale`: the learned spread of its Gaussian around a decoded
    code; `code_mean` and `code_covariance`: the mean and covariance matrix of
    the first stage's aggregate posterior q(z) on the training images, which
    sampling aims at.
    """

    def __init__(self, units, weights, noise_map, scale, code_mean, code_covariance):
        self.units = tuple(units)
        self.weights = weights
        self.noise_map = noise_map
        self.scale = scale
        self.code_mean = code_mean
        self.code_covariance = code_covariance

    @property
    def code_moments(self):
        """(mean, variance) per dimension of q(z)."""
        return self.code_mean, np.diag(self.code_covariance)

    def decoder_weights(self, match_moments=True, match_codes=False, noise=0.0):
        """The decoder's weights; with match_moments, with u = centre + lower @ eps
        folded into its first Dense layer, so that eps ~ N(0, I) is mapped onto
        q(u)'s fitted Gaussian (an ex-post fit of q(u), as Ghosh et al. 2020
        fit q(z)) instead of assuming that the KL term made q(u) exactly
        N(0, I). On the shipped first stage it is not (research/model/notebook.md,
        "Second-stage variants"). With match_codes, also with the last layer
        rescaled so that the codes, with noise of spread `noise` added, spread
        like the training codes (`_matched_to_codes`)."""
        weights = self.weights
        if match_moments:
            centre, lower = self.noise_map
            # eps @ (lower^T W) + (centre @ W + b)
            kernel, bias, *rest = weights
            weights = [(lower.T @ kernel).astype(np.float32),
                       (centre @ kernel + bias).astype(np.float32), *rest]
        if match_codes:
            weights = _matched_to_codes(self.units, weights, self.code_moments, noise)
        return weights


def _matched_to_codes(units, weights, code_moments, noise, seed=0):
    """A decoder's weights with its last layer rescaled per dimension so that
    its codes of eps ~ N(0, I), with Gaussian noise of spread `noise` added,
    have the training codes' mean and variance.

    A VAE's decoder gives the mean of what its code leaves uncertain, so the
    drawn codes spread less than the training codes (research/model/notebook.md's
    second-stage tables, "code variance"): the faces vary less than real ones.
    The gain per dimension restores the spread; the map is affine, so it
    folds into the last Dense layer and the model file keeps its form."""
    drawn = drawn_codes(units, weights, seed)
    *hidden, kernel, bias = weights
    mean, variance = code_moments
    # Var(gain * decoded + noise) = variance.
    gain = np.sqrt(np.maximum(variance - noise ** 2, 0.0) / np.maximum(drawn.var(axis=0), 1e-12))
    return [*hidden, (kernel * gain).astype(np.float32),
            (gain * bias + mean - gain * drawn.mean(axis=0)).astype(np.float32)]


def drawn_codes(units, weights, seed):
    """The decoder's codes of `_CALIBRATION_DRAWS` draws of eps ~ N(0, I)."""
    latent_dim = weights[0].shape[0]
    decoder = build_second_stage_decoder(latent_dim, units)
    decoder.set_weights(weights)
    eps = np.random.default_rng(seed).standard_normal((_CALIBRATION_DRAWS, latent_dim))
    return np.asarray(decoder(eps.astype(np.float32), training=False), np.float64)


def train_second_stage(z_mean, z_log_var, units=DEFAULT_UNITS, epochs=100, batch_size=256,
                       learning_rate=1e-3, seed=0, verbose=0, kl_weight=SECOND_STAGE_KL_WEIGHT):
    """Train a `SecondStageVAE` on first-stage codes; a `TrainedSecondStage`.

    kl_weight below 1 trades the match of q(u) to N(0, I), which the fitted
    noise map restores afterwards, for closer reconstructions of the codes."""
    keras.utils.set_random_seed(seed)
    second = SecondStageVAE(z_mean.shape[1], units, seed=seed, kl_weight=kl_weight)
    steps = epochs * math.ceil(len(z_mean) / batch_size)
    second.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(learning_rate, steps)))
    z_mean, z_log_var = np.asarray(z_mean, np.float32), np.asarray(z_log_var, np.float32)
    # Each batch is one input, the pair (z_mean, z_log_var), and no target.
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        dataset = (tf.data.Dataset.from_tensor_slices(((z_mean, z_log_var),))
                   .shuffle(len(z_mean), seed=seed).batch(batch_size).prefetch(2))
        second.fit(dataset, epochs=epochs, verbose=verbose, shuffle=False)
    else:
        second.fit((z_mean, z_log_var), batch_size=batch_size, epochs=epochs, verbose=verbose,
                   shuffle=True)
    scale = float(np.exp(max(float(second.log_scale.numpy()), _MIN_LOG_SCALE)))
    return TrainedSecondStage(units, second.decoder.get_weights(),
                              _fitted_noise_map(second, np.asarray(z_mean, np.float32)), scale,
                              *_code_moments(z_mean, z_log_var))


def _code_moments(z_mean, z_log_var):
    """Mean and covariance matrix of q(z) = E_x q(z|x): the means' covariance
    across faces plus the mean posterior variance on its diagonal."""
    z_mean = np.asarray(z_mean, np.float64)
    posterior_variance = np.exp(np.asarray(z_log_var, np.float64)).mean(axis=0)
    return (z_mean.mean(axis=0),
            np.cov(z_mean, rowvar=False, bias=True) + np.diag(posterior_variance))


def _fitted_noise_map(second, z_mean):
    """(centre, lower): the mean of q(u) on the codes and the Cholesky factor
    of its covariance."""
    u_means, u_variances = [], []
    for codes in batches(z_mean):
        u_mean, u_log_var = second.encoder(codes, training=False)
        u_means.append(np.asarray(u_mean, np.float64))
        u_variances.append(np.exp(np.asarray(u_log_var, np.float64)))
    # The codes' own posterior spread is negligible beside their spread
    # across faces (the shipped model's largest posterior variance is 1e-3),
    # so the means stand for the first-stage posterior here.
    u_mean = np.concatenate(u_means)
    covariance = np.cov(u_mean, rowvar=False) + np.diag(np.concatenate(u_variances).mean(axis=0))
    lower = np.linalg.cholesky(covariance + 1e-9 * np.eye(len(covariance)))
    return u_mean.mean(axis=0), lower
