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

Each step is one decoder pass forward and back, so refinement is opt-in
(`refine_steps`, `--refine-steps`). Images are independent: Adam's moments
are per coordinate and the objective is a sum over images, so a code does
not depend on the batch it was refined in.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# Codes are O(1) (the prior is N(0, I)); this rate moves them by a few
# hundredths per step, and 50 steps gain most of what 200 would.
LEARNING_RATE = 0.05
SUGGESTED_STEPS = 50


def refine_codes(model, images, codes, steps, learning_rate=LEARNING_RATE):
    """images (N, H, W, C) floats in [0, 1], codes (N, latent_dim) -> refined
    codes (N, latent_dim) float32, after `steps` Adam steps on the MAP objective."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    images = ops.convert_to_tensor(np.asarray(images, dtype="float32"))
    z = keras.Variable(np.asarray(codes, dtype="float32"), name="refined_codes")
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build([z])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            reconstructions = model.decoder(z, training=False)
            objective = ops.sum(model.reconstruction_term(images, reconstructions)) \
                + 0.5 * ops.sum(ops.square(z))
        optimizer.apply_gradients([(tape.gradient(objective, z), z)])

    for _ in range(steps):
        step()
    return ops.convert_to_numpy(z)
