"""Encoder and decoder networks, built from a `VAEConfig`.

Layers run in the given dtype policy (e.g. "mixed_bfloat16"); the latent heads
and the output activation stay float32 so the losses see full precision.
"""

import keras
from keras import layers

from cvae.model.layers import LOG_VARIANCE_UPPER, MEAN_LIMIT, Sampling, SoftClamp


def build_encoder(config, dtype=None, seed=None):
    """image -> (z_mean, z_log_var, z)."""
    images = keras.Input(shape=config.image_shape, name="image")
    x = images
    for filters in config.filters:
        x = _conv_block(x, layers.Conv2D, filters, 2, config, dtype)
        x = _refine(x, filters, config.encoder_extra_convs, config, dtype)
    x = layers.Flatten(dtype=dtype)(x)
    for units in config.dense_units:
        x = layers.Dense(units, activation=config.activation, dtype=dtype)(x)
    z_mean = layers.Dense(config.latent_dim, name="z_mean", dtype="float32")(x)
    z_log_var = layers.Dense(config.latent_dim, name="z_log_var", dtype="float32")(x)
    if config.bounded_posterior:
        z_mean = SoftClamp(MEAN_LIMIT, name="z_mean_clamp", dtype="float32")(z_mean)
        z_log_var = SoftClamp(upper=LOG_VARIANCE_UPPER, name="z_log_var_clamp",
                              dtype="float32")(z_log_var)
    else:
        z_log_var = SoftClamp(name="z_log_var_clamp", dtype="float32")(z_log_var)
    z = Sampling(seed=seed, name="sampling", dtype="float32")([z_mean, z_log_var])
    return keras.Model(images, [z_mean, z_log_var, z], name="encoder")


def build_decoder(config, dtype=None):
    """z -> image in [0, 1]."""
    side = config.bottleneck_size
    widest = config.filters[-1]
    latent = keras.Input(shape=(config.latent_dim,), name="z")
    x = layers.Dense(side * side * widest, activation=config.activation, dtype=dtype)(latent)
    x = layers.Reshape((side, side, widest), dtype=dtype)(x)
    for filters in reversed(config.filters[:-1]):
        x = _conv_block(x, layers.Conv2DTranspose, filters, 2, config, dtype)
        x = _refine(x, filters, config.decoder_extra_convs, config, dtype)
    if config.output_filters:
        x = _conv_block(x, layers.Conv2DTranspose, config.output_filters, 2, config, dtype)
        x = _refine(x, config.output_filters, 2 if config.block == "residual" else 1,
                    config, dtype)
        x = layers.Conv2D(config.channels, 3, padding="same", dtype=dtype)(x)
    else:
        x = layers.Conv2DTranspose(config.channels, 3, strides=2, padding="same", dtype=dtype)(x)
    # Upsampling doubles the bottleneck side, which can overshoot sizes that are
    # not a multiple of 2**stages (28 -> 4 -> 32): crop back symmetrically.
    excess = side * 2 ** len(config.filters) - config.image_size
    if excess:
        x = layers.Cropping2D(((excess // 2, excess - excess // 2),) * 2, dtype=dtype)(x)
    images = layers.Activation("sigmoid", name="image", dtype="float32")(x)
    return keras.Model(latent, images, name="decoder")


def build_patch_discriminator(config, dtype=None):
    """image in [0, 1] -> a grid of real-vs-reconstructed logits, one per
    overlapping patch (PatchGAN, Isola et al. 2017): the verdict is on local
    texture, which is what a per-pixel likelihood blurs. No normalization, as
    in the rest of the network; LeakyReLU keeps gradients for fakes.

    With `config.discriminator_scales` N > 1 the model returns a list of N
    grids: the first for the image, the others from PatchGANs of their own on
    the image average-pooled 2, 4, ... times."""
    images = keras.Input(shape=config.image_shape, name="image")
    x = layers.Rescaling(2.0, offset=-1.0, dtype=dtype)(images)
    grids = []
    for scale in range(config.discriminator_scales):
        if scale:
            x = layers.AveragePooling2D(2, padding="same", dtype=dtype)(x)
        grids.append(_patch_logits(x, config, dtype, suffix=f"_{scale}" if scale else ""))
    return keras.Model(images, grids if len(grids) > 1 else grids[0], name="discriminator")


def _patch_logits(x, config, dtype, suffix):
    for filters in config.discriminator_filters:
        x = layers.Conv2D(filters, 4, strides=2, padding="same", activation="leaky_relu",
                          dtype=dtype)(x)
    return layers.Conv2D(1, 4, padding="same", name="patch_logits" + suffix, dtype="float32")(x)


def _refinement_counts(convs, config):
    """(residual blocks, plain convolutions) that `convs` extra convolutions make."""
    return (convs // 2, convs % 2) if config.block == "residual" else (0, convs)


def _refine(x, filters, convs, config, dtype):
    """`convs` more 3x3 convolutions at the same resolution: plain blocks, or
    residual blocks of two convolutions each (an odd one left over is plain)."""
    blocks, plain = _refinement_counts(convs, config)
    for _ in range(blocks):
        skip = x
        x = _conv_block(x, layers.Conv2D, filters, 1, config, dtype)
        # The branch's last convolution starts at zero, so each block starts
        # as the identity: without normalization, a sum of random branches
        # grows with depth and the first steps blow up.
        x = _conv_block(x, layers.Conv2D, filters, 1, config, dtype, activate=False,
                        initializer="zeros")
        x = layers.Add(dtype=dtype)([skip, x])
        x = layers.Activation(config.activation, dtype=dtype)(x)
    for _ in range(plain):
        x = _conv_block(x, layers.Conv2D, filters, 1, config, dtype)
    return x


def _conv_block(x, conv_class, filters, strides, config, dtype, activate=True,
                initializer="glorot_uniform"):
    activation = config.activation if activate else None
    if config.normalization == "none":
        return conv_class(filters, 3, strides=strides, padding="same", activation=activation,
                          kernel_initializer=initializer, dtype=dtype)(x)
    x = conv_class(filters, 3, strides=strides, padding="same", use_bias=False,
                   kernel_initializer=initializer, dtype=dtype)(x)
    if config.normalization == "batch":
        x = layers.BatchNormalization(dtype=dtype)(x)
    else:
        x = layers.GroupNormalization(groups=_groups(filters), dtype=dtype)(x)
    return layers.Activation(activation, dtype=dtype)(x) if activate else x


def _groups(filters, preferred=8):
    return preferred if filters % preferred == 0 else 1
