"""The VAE: encoder + decoder, the training objective, and the public API."""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from cvae import losses
from cvae.config import VAEConfig
from cvae.networks import build_decoder, build_encoder
from cvae.second_stage import build_second_stage_decoder

_INFERENCE_BATCH = 256
# A learned decoder scale starts near the spread of untrained reconstructions'
# errors, and may not fall below the quantisation step of 8-bit pixels.
_INITIAL_LOG_SCALE = math.log(0.1)
_MIN_LOG_SCALE = math.log(1.0 / 255.0)


@keras.saving.register_keras_serializable(package="cvae")
class VAE(keras.Model):
    """Convolutional VAE trained with `fit`; metrics: loss, reconstruction_loss, kl_loss.

    loss = reconstruction_weight * reconstruction_loss + beta * kl_loss, both
    per image, averaged over the batch; reconstruction_weight is 1 except in
    experiments. During training beta ramps up over `kl_warmup_steps`;
    evaluation always uses the full beta so `val_loss` is comparable across epochs.
    """

    def __init__(self, config=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = VAEConfig()
        elif isinstance(config, dict):
            config = VAEConfig.from_dict(config)
        self.config = config
        self.seed = seed
        compute_dtype = self.dtype_policy.name
        self.encoder = build_encoder(config, dtype=compute_dtype, seed=seed)
        self.decoder = build_decoder(config, dtype=compute_dtype)
        if config.decoder_scale == "learned":
            self.log_decoder_scale = self.add_weight(
                shape=(), name="log_decoder_scale", dtype="float32",
                initializer=keras.initializers.Constant(_INITIAL_LOG_SCALE))
        # Trained after the first stage (cvae.second_stage), never by fit.
        self.second_stage_decoder = None
        if config.second_stage_units:
            self.second_stage_decoder = build_second_stage_decoder(
                config.latent_dim, config.second_stage_units)
            self.second_stage_decoder.trainable = False
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    # --- training -----------------------------------------------------------

    def call(self, images, training=False):
        z_mean, _, _ = self.encoder(_to_unit_float(images), training=training)
        return self.decoder(z_mean, training=training)

    def train_step(self, data):
        images = _to_unit_float(_images_from(data))
        # Under a distribution strategy each replica sees its share of the
        # global batch and the optimizer sums the replicas' gradients, so each
        # replica's mean is divided by their number: the update is then that
        # of the mean over the global batch, as on one device.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            terms = self._objective(images, training=True)
            scaled_loss = self.optimizer.scale_loss(terms["loss"] / replicas)
        gradients = tape.gradient(scaled_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self._update_metrics(terms)

    def test_step(self, data):
        images = _to_unit_float(_images_from(data))
        return self._update_metrics(self._objective(images, training=False))

    def _objective(self, images, training):
        z_mean, z_log_var, z = self.encoder(images, training=training)
        reconstructions = self.decoder(z, training=training)
        reconstruction_loss = ops.mean(losses.reconstruction_loss(
            images, reconstructions, self.config.likelihood,
            self.decoder_scale(images, reconstructions)))
        if self.config.pyramid_weight:
            reconstruction_loss += self.config.pyramid_weight * ops.mean(
                losses.pyramid_loss(images, reconstructions))
        kl_loss = ops.mean(losses.kl_divergence(z_mean, z_log_var))
        if training:
            weight = losses.kl_weight(self.optimizer.iterations, self.config.beta,
                                      self.config.kl_warmup_steps)
        else:
            weight = self.config.beta
        return {"loss": self.config.reconstruction_weight * reconstruction_loss + weight * kl_loss,
                "reconstruction_loss": reconstruction_loss,
                "kl_loss": kl_loss}

    def _update_metrics(self, terms):
        for tracker in self.metrics:
            tracker.update_state(terms[tracker.name])
        results = {tracker.name: tracker.result() for tracker in self.metrics}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3 averages each replica's logs across workers along axis 0,
            # which fails on scalars (tensorflow/tensorflow#72388); shape (1,)
            # averages to the same scalar.
            results = {name: ops.reshape(value, (1,)) for name, value in results.items()}
        return results

    def decoder_scale(self, images=None, reconstructions=None):
        """The decoder likelihood's scale (Gaussian sigma or Laplace b)."""
        scale = self.config.decoder_scale
        if scale == "learned":
            return ops.exp(ops.maximum(self.log_decoder_scale, _MIN_LOG_SCALE))
        if scale == "calibrated":
            return losses.calibrated_scale(images, reconstructions, self.config.likelihood)
        return scale

    # --- public API: numpy in, numpy out ------------------------------------

    def encode(self, images):
        """images (N, H, W, C), uint8 or float in [0, 1] -> (z_mean, z_log_var)."""
        images = self._check_images(images)
        outputs = [self.encoder(batch, training=False)[:2]
                   for batch in _batches(images)]
        z_mean = np.concatenate([ops.convert_to_numpy(m) for m, _ in outputs])
        z_log_var = np.concatenate([ops.convert_to_numpy(v) for _, v in outputs])
        return z_mean, z_log_var

    def decode(self, z):
        """z (N, latent_dim) -> images (N, H, W, C), float32 in [0, 1]."""
        z = np.asarray(z, dtype="float32")
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must have shape (N, {self.config.latent_dim}), got {z.shape}")
        return np.concatenate([ops.convert_to_numpy(self.decoder(batch, training=False))
                               for batch in _batches(z)])

    def reconstruct(self, images):
        """Decode each image's posterior mean: the deterministic round trip."""
        z_mean, _ = self.encode(images)
        return self.decode(z_mean)

    def generate(self, n, seed=None, temperature=1.0, sampler=None):
        """Decode n codes drawn from N(0, temperature**2 I) by the default
        sampler: through the second stage when the model has one, else
        directly (see `cvae.samplers` for the choices)."""
        from cvae.samplers import sample_latents

        return self.decode(sample_latents(self, n, seed, temperature, sampler=sampler))

    def set_first_stage_weights(self, other):
        """Copy encoder, decoder and decoder scale from a model of the same first stage."""
        self.encoder.set_weights(other.encoder.get_weights())
        self.decoder.set_weights(other.decoder.get_weights())
        if self.config.decoder_scale == "learned":
            self.log_decoder_scale.assign(other.log_decoder_scale)

    def _check_images(self, images):
        images = np.asarray(images)
        expected = self.config.image_shape
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"images must have shape (N, {', '.join(map(str, expected))}), "
                             f"got {images.shape}")
        return ops.convert_to_numpy(_to_unit_float(images))

    # --- serialization ------------------------------------------------------

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy),
                "config": self.config.to_dict(), "seed": self.seed}


def _images_from(data):
    # fit() may hand over x alone or (x,) / (x, y) tuples; the VAE only needs x.
    return data[0] if isinstance(data, (tuple, list)) else data


def _to_unit_float(images):
    if images.dtype == "uint8":
        return ops.cast(images, "float32") / 255.0
    return ops.cast(images, "float32")


def _batches(array):
    for start in range(0, len(array), _INFERENCE_BATCH):
        yield array[start:start + _INFERENCE_BATCH]
