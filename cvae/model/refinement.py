"""Code refinement: improve an image's code by descending against the decoder.

The encoder is amortised: one network guesses every image's code in a single
pass, and its guess falls short of the code that the decoder reconstructs the
image best from (the amortisation gap, Cremer et al. 2018). A few Adam steps
per image on the model's own MAP objective,

    -log p(x | z) - log p(z)   (the decoder's likelihood and the N(0, I) prior),

starting from the encoder's mean, close much of that gap: semi-amortised
inference (Kim et al. 2018), or encoder-side optimisation in learned
compression (Campos et al. 2019). The prior term keeps the codes where the
decoder was trained and the codec's entropy model expects them.

Descending on closeness alone buys part of it by thinning out the fine
detail: with a decoder trained against a discriminator, the closest codes
decode to smoother images. A texture term (`cvae.model.losses.band_energy_gap`)
holds each Laplacian-pyramid level's energy at the image's own, so the
refined reconstruction is closer and keeps the encoder's texture.

Each step is one decoder pass forward and back, so refinement is opt-in
(`refine_steps`, `--refine-steps`). Images are independent: Adam's moments
are per coordinate and the objective is a sum over images, so a code does
not depend on the batch it was refined in.
"""

import keras
import numpy as np
from keras import ops

from cvae.model.losses import band_energy_gap

# Codes are O(1) (the prior is N(0, I)); this rate moves them by a few
# hundredths per step, and 50 steps gain most of what 200 would.
LEARNING_RATE = 0.05
SUGGESTED_STEPS = 50
# The texture term's default weight (refine_codes): on the shipped model's
# held-out training share, 0.05 keeps all but 0.07 dB of plain refinement's
# gain and leaves each pyramid level's SWD at or below the encoder's own
# reconstructions', where plain refinement raised the 64 and 32 px levels by
# a quarter to a half (research/model/notebook.md, "Refining with a texture term").
TEXTURE_WEIGHT = 0.05


def refine_codes(model, images, codes, steps, learning_rate=LEARNING_RATE, texture_weight=None):
    """images (N, H, W, C) floats in [0, 1], codes (N, latent_dim) -> refined
    codes (N, latent_dim) float32, after `steps` Adam steps on the MAP objective.

    texture_weight > 0 adds texture_weight * (D / 2) * losses.band_energy_gap,
    D the image's values: the descent may not buy closeness by thinning out
    the fine levels (D / 2 puts a log-ratio on the scale of the Gaussian
    likelihood's (D / 2) log MSE). None: TEXTURE_WEIGHT."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    texture_weight = TEXTURE_WEIGHT if texture_weight is None else texture_weight
    images = ops.convert_to_tensor(np.asarray(images, dtype="float32"))
    z = keras.Variable(np.asarray(codes, dtype="float32"), name="refined_codes")
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build([z])
    values_per_image = float(np.prod(images.shape[1:]))

    def objective(codes):
        reconstructions = model.decoder(codes, training=False)
        value = ops.sum(model.reconstruction_term(images, reconstructions)) \
            + 0.5 * ops.sum(ops.square(codes))
        if texture_weight:
            value += texture_weight * 0.5 * values_per_image * ops.sum(
                band_energy_gap(images, reconstructions))
        return value

    gradient = _gradient_function(objective, z)
    for _ in range(steps):
        optimizer.apply_gradients([(gradient(), z)])
    return ops.convert_to_numpy(z)


def _gradient_function(objective, codes):
    """A function giving the gradient of `objective` at the current value of
    `codes` (a keras.Variable), compiled once by the running backend: the
    objective is written in keras.ops, and only taking its gradient differs."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def gradient():
            with tf.GradientTape() as tape:
                value = objective(codes)
            return tape.gradient(value, codes.value)

        return gradient
    if backend == "jax":
        import jax

        # The decoder's weights enter as constants: only the codes are traced.
        compiled = jax.jit(jax.grad(objective))
        return lambda: compiled(codes.value)
    if backend == "torch":
        import torch

        def gradient():
            values = codes.value.detach().requires_grad_(True)
            return torch.autograd.grad(objective(values), values)[0]

        return gradient
    raise NotImplementedError(f"refining codes is not written for the {backend} backend")
