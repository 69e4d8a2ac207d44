"""The VAE: encoder + decoder, the training objective, and the public API."""

import math

import keras
import numpy as np
from keras import ops

from cvae.batching import batches
from cvae.model import losses
from cvae.model.config import VAEConfig
from cvae.model.networks import build_decoder, build_encoder, build_patch_discriminator
from cvae.model.second_stage import build_second_stage_decoder

# A learned decoder scale starts near the spread of untrained reconstructions'
# errors, and may not fall below the quantisation step of 8-bit pixels.
_INITIAL_LOG_SCALE = math.log(0.1)
_MIN_LOG_SCALE = math.log(1.0 / 255.0)
# The discriminator's Adam, as in VQGAN: a lower rate and short momentum,
# since the game's target moves every step.
_DISCRIMINATOR_LEARNING_RATE = 1e-4
_DISCRIMINATOR_BETAS = (0.5, 0.9)
# Bounds the adaptive adversarial scale when the adversarial gradient vanishes.
_MAX_ADVERSARIAL_SCALE = 1e6
# What an adversarial training step reports, in the order its branches return them.
ADVERSARIAL_BACKEND_ERROR = ("the adversarial term trains on the TensorFlow backend only; "
                             "set --adversarial-weight 0 or KERAS_BACKEND=tensorflow")
_STEP_TERMS = ("loss", "reconstruction_loss", "kl_loss", "adversarial_loss",
               "discriminator_loss", "adversarial_scale")


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
        # Trained after the first stage (cvae.model.second_stage), never by fit.
        self.second_stage_decoder = None
        if config.second_stage_units:
            self.second_stage_decoder = build_second_stage_decoder(
                config.latent_dim, config.second_stage_units)
            self.second_stage_decoder.trainable = False
        self._pixel_weights = None
        if config.face_weight > 0:
            from cvae.data.align import face_region_weights

            self._pixel_weights = face_region_weights(config.image_size, config.face_weight)
        self.discriminator = None
        if config.adversarial_weight > 0:
            self._build_discriminator(compute_dtype)
        if config.kl_warmup_steps > 0:
            # The KL warm-up's own step count. Not the optimizer's iterations:
            # JAX's trainer hands compute_loss the model's variables as state,
            # but not the optimizer's, which a jitted step would read as a
            # constant; a model variable is state on every backend.
            self.kl_warmup_step = self.add_weight(
                shape=(), name="kl_warmup_step", dtype="float32", trainable=False,
                initializer="zeros", autocast=False, aggregation="only_first_replica")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        self.adversarial_trackers = []
        if self.discriminator is not None:
            self.adversarial_trackers = [keras.metrics.Mean(name=name) for name in
                                         ("adversarial_loss", "discriminator_loss",
                                          "adversarial_scale")]
        self.built = True

    def _build_discriminator(self, compute_dtype):
        self.discriminator = build_patch_discriminator(self.config, dtype=compute_dtype)
        optimizer = keras.optimizers.Adam(_DISCRIMINATOR_LEARNING_RATE,
                                          beta_1=_DISCRIMINATOR_BETAS[0],
                                          beta_2=_DISCRIMINATOR_BETAS[1])
        if compute_dtype == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        # Built now, so that a backup's weights file (which holds it, and
        # which is loaded before the first step) finds its variables.
        optimizer.build(self.discriminator.trainable_variables)
        self.discriminator_optimizer = optimizer
        # The adaptive weight compares gradients at the decoder's last layer.
        self._last_decoder_kernel = [layer for layer in self.decoder.layers
                                     if hasattr(layer, "kernel")][-1].kernel

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker,
                *self.adversarial_trackers]

    @property
    def vae_weights(self):
        """What the VAE's optimizer trains: all trainable weights but the discriminator's."""
        if self.discriminator is None:
            return self.trainable_weights
        excluded = {id(weight) for weight in self.discriminator.trainable_weights}
        return [weight for weight in self.trainable_weights if id(weight) not in excluded]

    # --- training -----------------------------------------------------------
    #
    # The objective lives in `compute_loss`, so Keras's own train and test
    # steps, on every backend, differentiate it; only the adversarial term,
    # whose step drives two optimizers, has a step of its own (TensorFlow).

    def call(self, images, training=False):
        """The forward pass that `fit` and `evaluate` differentiate: the
        posterior's mean and log-variance, a code `z` drawn from it, and its
        `reconstruction`. `reconstruct` is the deterministic round trip."""
        z_mean, z_log_var, z = self.encoder(_to_unit_float(images), training=training)
        return {"z_mean": z_mean, "z_log_var": z_log_var, "z": z,
                "reconstruction": self.decoder(z, training=training)}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The negative ELBO per image, averaged over the batch (see the class
        docstring), with the trackers updated from its terms."""
        images = _to_unit_float(_images_from(x))
        terms = self.objective(images, y_pred, training)
        self._update_metrics(terms, batch_size=ops.shape(images)[0])
        # Under a TensorFlow distribution strategy each replica sees its share
        # of the global batch and the optimizer sums the replicas' gradients,
        # so each replica's mean is divided by their number: the update is
        # that of the mean over the global batch, as on one device.
        return terms["loss"] / _replicas()

    def objective(self, images, outputs, training):
        """The objective's terms for unit-float `images` and the forward
        pass's `outputs` (`call`): loss, reconstruction_loss, kl_loss."""
        reconstruction_loss = ops.mean(self.reconstruction_term(images, outputs["reconstruction"]))
        kl_loss = ops.mean(losses.kl_divergence(outputs["z_mean"], outputs["z_log_var"]))
        return {"loss": self.config.reconstruction_weight * reconstruction_loss
                + self._kl_weight(training) * kl_loss,
                "reconstruction_loss": reconstruction_loss,
                "kl_loss": kl_loss}

    def _kl_weight(self, training):
        """beta; in training, ramped up over the first `kl_warmup_steps` steps."""
        if not training or self.config.kl_warmup_steps <= 0:
            return self.config.beta
        step = ops.convert_to_tensor(self.kl_warmup_step)
        self.kl_warmup_step.assign(step + 1.0)
        return losses.kl_weight(step, self.config.beta, self.config.kl_warmup_steps)

    def train_step(self, *args):
        if self.discriminator is None:
            return super().train_step(*args)
        return self._adversarial_train_step(_adversarial_images(args), _replicas())

    def test_step(self, *args):
        if self.discriminator is None:
            return super().test_step(*args)
        images = _adversarial_images(args)
        outputs = self(images, training=False)
        terms = self.objective(images, outputs, training=False)
        terms.update(self._adversarial_terms(images, outputs["reconstruction"], training=False))
        return self._update_metrics(terms, batch_size=ops.shape(images)[0])

    def _adversarial_train_step(self, images, replicas):
        """One step of the VAE and one of the discriminator, from one forward
        pass: loss + scale * adversarial_loss for the VAE, where the scale is
        adversarial_weight times the ratio of gradient norms at the decoder's
        last layer (held constant), and the hinge loss for the discriminator.

        Before `adversarial_start_step` the step is the likelihood's alone and
        the discriminator is not run: its weights get zero gradients (Adam
        then leaves them as they are), and its losses are not averaged in."""
        import tensorflow as tf

        weights = self.vae_weights
        unit = self.optimizer.scale_loss(ops.convert_to_tensor(1.0 / replicas, "float32"))

        def with_the_term():
            gradients, discriminator_gradients, terms = self._adversarial_gradients(
                images, weights, unit, replicas)
            return gradients, discriminator_gradients, [terms[name] for name in _STEP_TERMS]

        if self.config.adversarial_start_step == 0:
            gradients, discriminator_gradients, values = with_the_term()
            started = ops.convert_to_tensor(1.0, "float32")
        else:
            def likelihood_only():
                with tf.GradientTape() as tape:
                    terms = self.objective(images, self(images, training=True), training=True)
                gradients = tape.gradient(terms["loss"], weights, output_gradients=unit)
                zeros = [ops.zeros_like(weight) for weight in self.discriminator.trainable_weights]
                nothing = ops.convert_to_tensor(0.0, "float32")
                return gradients, zeros, [ops.cast(terms[name], "float32")
                                          if name in terms else nothing
                                          for name in _STEP_TERMS]

            started_now = self.optimizer.iterations >= self.config.adversarial_start_step
            gradients, discriminator_gradients, values = tf.cond(
                started_now, with_the_term, likelihood_only)
            started = ops.cast(started_now, "float32")
        self.optimizer.apply_gradients(zip(gradients, weights))
        self.discriminator_optimizer.apply_gradients(zip(discriminator_gradients,
                                                         self.discriminator.trainable_weights))
        # The discriminator's losses exist from the start step on; before it
        # they weigh nothing in the epoch's means.
        return self._update_metrics(dict(zip(_STEP_TERMS, values)),
                                    {"adversarial_loss": started, "discriminator_loss": started})

    def _adversarial_gradients(self, images, weights, unit, replicas):
        """The VAE's and the discriminator's gradients for one step with the term on."""
        import tensorflow as tf

        # The weighted sums are taken by the tape's output_gradients: the
        # weights are only known after the forward pass has been recorded.
        with tf.GradientTape(persistent=True) as tape:
            outputs = self(images, training=True)
            terms = self.objective(images, outputs, training=True)
            terms.update(self._adversarial_terms(images, outputs["reconstruction"],
                                                 training=True))
        likelihood_gradient = tape.gradient(terms["reconstruction_loss"], self._last_decoder_kernel)
        adversarial_gradient = tape.gradient(terms["adversarial_loss"], self._last_decoder_kernel)
        ratio = _norm(likelihood_gradient) / (_norm(adversarial_gradient) + 1e-4)
        scale = ops.stop_gradient(ops.clip(ratio, 0.0, _MAX_ADVERSARIAL_SCALE)) * (
            self.config.adversarial_weight)
        terms["adversarial_scale"] = scale
        gradients = tape.gradient([terms["loss"], terms["adversarial_loss"]], weights,
                                  output_gradients=[unit, unit * scale])
        discriminator_unit = self.discriminator_optimizer.scale_loss(
            ops.convert_to_tensor(1.0 / replicas, "float32"))
        discriminator_gradients = tape.gradient(terms["discriminator_loss"],
                                                self.discriminator.trainable_weights,
                                                output_gradients=discriminator_unit)
        del tape
        return gradients, discriminator_gradients, {name: ops.cast(terms[name], "float32")
                                                    for name in _STEP_TERMS}

    def _adversarial_terms(self, images, reconstructions, training):
        # A multi-scale discriminator gives one grid of logits per scale; each
        # scale's loss counts alike, so the mean over them is the term.
        real_grids = _as_list(self.discriminator(images, training=training))
        fake_grids = _as_list(self.discriminator(reconstructions, training=training))
        adversarial = [ops.mean(losses.generator_adversarial_loss(fake)) for fake in fake_grids]
        discriminator = [ops.mean(losses.discriminator_hinge_loss(real, fake))
                         for real, fake in zip(real_grids, fake_grids)]
        return {"adversarial_loss": sum(adversarial) / len(adversarial),
                "discriminator_loss": sum(discriminator) / len(discriminator)}

    def _update_metrics(self, terms, sample_weights=None, batch_size=None):
        """Each tracker named in `terms` takes its value, weighted by
        `sample_weights[name]` where given, else by `batch_size`; returns the
        trackers' results."""
        # The adversarial scale exists in training steps only.
        trackers = [tracker for tracker in self.metrics if tracker.name in terms]
        sample_weights = sample_weights or {}
        for tracker in trackers:
            tracker.update_state(terms[tracker.name],
                                 sample_weight=sample_weights.get(tracker.name, batch_size))
        return {tracker.name: tracker.result() for tracker in trackers}

    def reconstruction_term(self, images, reconstructions):
        """The objective's reconstruction term, per image: -log p(x | z) under
        the decoder's likelihood, plus the pyramid term when configured."""
        term = losses.reconstruction_loss(images, reconstructions, self.config.likelihood,
                                          self.decoder_scale(images, reconstructions),
                                          self._pixel_weights)
        if self.config.pyramid_weight:
            term += self.config.pyramid_weight * losses.pyramid_loss(images, reconstructions)
        return term

    def decoder_scale(self, images=None, reconstructions=None):
        """The decoder likelihood's scale (Gaussian sigma or Laplace b)."""
        scale = self.config.decoder_scale
        if scale == "learned":
            return ops.exp(ops.maximum(self.log_decoder_scale, _MIN_LOG_SCALE))
        if scale == "calibrated":
            return losses.calibrated_scale(images, reconstructions, self.config.likelihood)
        return scale

    # --- public API: numpy in, numpy out ------------------------------------

    def encode(self, images, refine_steps=0, texture_weight=None):
        """images (N, H, W, C), uint8 or float in [0, 1] -> (z_mean, z_log_var).

        With refine_steps > 0, z_mean is replaced by the encoder's mean refined
        by that many gradient steps against the decoder (`cvae.model.refinement`):
        a code that the decoder turns into a closer reconstruction, at the
        cost of a decoder pass forward and back per step. texture_weight:
        the refinement's texture term (None: `cvae.model.refinement`'s default).
        """
        images = self._check_images(images)
        # Batch by batch, numpy out: tens of thousands of images as float32
        # at once would take gigabytes.
        outputs = [self.encoder(_to_unit_float(batch), training=False)[:2]
                   for batch in batches(images)]
        z_mean = np.concatenate([ops.convert_to_numpy(m) for m, _ in outputs])
        z_log_var = np.concatenate([ops.convert_to_numpy(v) for _, v in outputs])
        if refine_steps:
            z_mean = self.refine(images, z_mean, refine_steps, texture_weight)
        return z_mean, z_log_var

    def refine(self, images, codes, steps, texture_weight=None):
        """`codes` (N, latent_dim; usually the encoder's means of `images`)
        refined by `steps` gradient steps against the decoder (`cvae.model.refinement`;
        texture_weight None: its default)."""
        from cvae.model.refinement import refine_codes

        images = self._check_images(images)
        return np.concatenate([
            refine_codes(self, ops.convert_to_numpy(_to_unit_float(batch)), batch_codes, steps,
                         texture_weight=texture_weight)
            for batch, batch_codes in zip(batches(images), batches(np.asarray(codes)))])

    def decode(self, z):
        """z (N, latent_dim) -> images (N, H, W, C), float32 in [0, 1]."""
        z = np.asarray(z, dtype="float32")
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must have shape (N, {self.config.latent_dim}), got {z.shape}")
        return np.concatenate([ops.convert_to_numpy(self.decoder(batch, training=False))
                               for batch in batches(z)])

    def reconstruct(self, images, refine_steps=0, texture_weight=None):
        """Decode each image's posterior mean (refined by `refine_steps`
        steps, see `encode`): the deterministic round trip."""
        z_mean, _ = self.encode(images, refine_steps=refine_steps, texture_weight=texture_weight)
        return self.decode(z_mean)

    def generate(self, n, seed=None, temperature=1.0, sampler=None):
        """Decode n codes drawn from N(0, temperature**2 I) by the default
        sampler: through the second stage when the model has one, else
        directly (see `cvae.sampling.samplers` for the choices)."""
        from cvae.sampling.samplers import sample_latents

        return self.decode(sample_latents(self, n, seed, temperature, sampler=sampler))

    @property
    def first_stage_variables(self):
        """The encoder's, the decoder's and the learned decoder scale's
        variables: all that encoding, decoding and refining a code depend on,
        and none of the samplers' or the discriminator's."""
        variables = [*self.encoder.weights, *self.decoder.weights]
        if self.config.decoder_scale == "learned":
            variables.append(self.log_decoder_scale)
        return variables

    def first_stage_weights(self):
        """The values of `first_stage_variables`."""
        return [ops.convert_to_numpy(variable) for variable in self.first_stage_variables]

    def set_first_stage_weights(self, other):
        """Copy encoder, decoder and decoder scale from a model of the same first stage."""
        self.encoder.set_weights(other.encoder.get_weights())
        self.decoder.set_weights(other.decoder.get_weights())
        if self.config.decoder_scale == "learned":
            self.log_decoder_scale.assign(other.log_decoder_scale)

    def copy_weights_from(self, other):
        """Start from `other`'s weights: the first stage, and the second stage
        and discriminator where both models have them (a fine-tuning run may
        add a discriminator to a model trained without one)."""
        self.set_first_stage_weights(other)
        for part in ("second_stage_decoder", "discriminator"):
            mine, theirs = getattr(self, part), getattr(other, part)
            if mine is not None and theirs is not None:
                mine.set_weights(theirs.get_weights())

    def _check_images(self, images):
        """The images as an (N, H, W, C) array of the model's shape, in their own dtype."""
        images = np.asarray(images)
        expected = self.config.image_shape
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"images must have shape (N, {', '.join(map(str, expected))}), "
                             f"got {images.shape}")
        if images.dtype != np.uint8:
            images = images.astype(np.float32, copy=False)
        return images

    # --- serialization ------------------------------------------------------

    def load_own_variables(self, store):
        # Files written before the KL warm-up counted its own steps lack the
        # counter; the models they hold were trained past any warm-up.
        counter = getattr(self, "kl_warmup_step", None)
        if counter is not None and len(store.keys()) == len(self._own_variables()) - 1:
            variables = [v for v in self._own_variables() if v is not counter]
            for index, variable in enumerate(variables):
                variable.assign(store[str(index)])
            counter.assign(float(self.config.kl_warmup_steps))
            return
        super().load_own_variables(store)

    def _own_variables(self):
        # The order Keras saves a layer's own variables in.
        return [*self._trainable_variables, *self._non_trainable_variables]

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy),
                "config": self.config.to_dict(), "seed": self.seed}


def _replicas():
    """How many replicas share each step: those of TensorFlow's distribution
    strategy; on other backends a step sees the global batch at once."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def _norm(tensor):
    return ops.sqrt(ops.sum(ops.square(ops.cast(tensor, "float32"))))


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _adversarial_images(step_arguments):
    """The unit-float images of a TensorFlow step's arguments: the
    adversarial steps exist for TensorFlow alone."""
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(ADVERSARIAL_BACKEND_ERROR)
    (data,) = step_arguments
    return _to_unit_float(_images_from(data))


def _images_from(data):
    # fit() may hand over x alone or (x,) / (x, y) tuples; the VAE only needs x.
    return data[0] if isinstance(data, (tuple, list)) else data


def _to_unit_float(images):
    if images.dtype == "uint8":
        return ops.cast(images, "float32") / 255.0
    return ops.cast(images, "float32")

