"""The VAE objective: reconstruction negative log-likelihood and the KL term.

Every function returns one value per image (summed over pixels or latent
dimensions) in float32, whatever the compute precision of the network.
"""

import math

from keras import ops

_LOG_2PI = math.log(2.0 * math.pi)
# Keeps log() finite when a reconstruction is exactly 0 or 1, or a scale is 0.
_EPSILON = 1e-6


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)), closed form, per image."""
    return ops.sum(kl_per_latent(ops.cast(z_mean, "float32"), ops.cast(z_log_var, "float32")),
                   axis=-1)


def kl_per_latent(z_mean, z_log_var):
    """The same KL term by term, one per latent dimension, in the inputs' dtype."""
    return 0.5 * (ops.square(z_mean) + ops.exp(z_log_var) - 1.0 - z_log_var)


def reconstruction_loss(images, reconstructions, likelihood, scale=1.0, pixel_weights=None):
    """-log p(images | reconstructions), summed over pixels, per image.

    `scale` is the Gaussian's sigma or the Laplace's b (ignored for bernoulli);
    it may be a tensor, e.g. a learned or calibrated scalar. `pixel_weights`
    (H, W), mean 1: each pixel's term weighted, e.g. the face over the
    background (`cvae.data.align.face_region_weights`).
    """
    images = ops.cast(images, "float32")
    reconstructions = ops.cast(reconstructions, "float32")
    if likelihood == "bernoulli":
        p = ops.clip(reconstructions, _EPSILON, 1.0 - _EPSILON)
        per_pixel = -(images * ops.log(p) + (1.0 - images) * ops.log(1.0 - p))
    elif likelihood == "gaussian":
        scale = ops.cast(scale, "float32")
        per_pixel = (0.5 * ops.square((images - reconstructions) / scale)
                     + ops.log(scale) + 0.5 * _LOG_2PI)
    elif likelihood == "l1":
        # Laplace likelihood: the L1 distance plus its normalising constant.
        scale = ops.cast(scale, "float32")
        per_pixel = ops.abs(images - reconstructions) / scale + ops.log(2.0 * scale)
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    if pixel_weights is not None:
        per_pixel = per_pixel * ops.cast(pixel_weights, "float32")[None, :, :, None]
    return ops.sum(ops.reshape(per_pixel, (ops.shape(per_pixel)[0], -1)), axis=-1)


def pyramid_loss(images, reconstructions, levels=4):
    """Laplace negative log-likelihood of the reconstruction error in each
    band-pass level of a Laplacian pyramid, per image, summed over levels.

    Each level's scale is its batch's mean absolute error (the maximum-
    likelihood Laplace scale), so a level's term is about its coefficient
    count times log(error): halving the error of the finest level gains as
    much as halving the coarsest's. A per-pixel likelihood instead weighs
    errors by size, and the small errors of fine texture hardly count, which
    is why its decoders blur.
    """
    error = ops.cast(images, "float32") - ops.cast(reconstructions, "float32")
    total = 0.0
    for band in _band_pass_levels(error, levels):
        scale = ops.maximum(ops.mean(ops.abs(band)), 1e-4)
        per_value = ops.abs(band) / scale + ops.log(2.0 * scale)
        total = total + ops.sum(ops.reshape(per_value, (ops.shape(band)[0], -1)), axis=-1)
    return total


def band_energy_gap(images, reconstructions, levels=4):
    """Per image, the squared log-ratio of the reconstruction's energy to the
    image's in each band-pass level of a Laplacian pyramid, summed over
    levels: zero when every level carries as much detail as the image's,
    whether or not it lines up with it. A blurred reconstruction has too
    little energy in the fine levels."""
    def log_energy(band):
        flat = ops.reshape(ops.square(band), (ops.shape(band)[0], -1))
        return ops.log(ops.mean(flat, axis=-1) + 1e-8)

    total = 0.0
    for image_band, reconstruction_band in zip(
            _band_pass_levels(ops.cast(images, "float32"), levels),
            _band_pass_levels(ops.cast(reconstructions, "float32"), levels)):
        total = total + ops.square(log_energy(reconstruction_band) - log_energy(image_band))
    return total


def _band_pass_levels(images, levels):
    """The first `levels` band-pass levels of a Laplacian pyramid, finest first."""
    for _ in range(levels):
        coarser = _downsample(images)
        yield images - _upsample(coarser, ops.shape(images))
        images = coarser


def _downsample(images):
    return ops.average_pool(images, pool_size=2, strides=2, padding="valid")


def _upsample(images, shape):
    return ops.image.resize(images, (shape[1], shape[2]), interpolation="bilinear")


def discriminator_hinge_loss(real_logits, fake_logits):
    """The discriminator's hinge loss (Lim & Ye 2017, as in VQGAN), per image:
    push real patches' logits above 1 and reconstructed ones' below -1."""
    real = _per_image_mean(ops.relu(1.0 - ops.cast(real_logits, "float32")))
    fake = _per_image_mean(ops.relu(1.0 + ops.cast(fake_logits, "float32")))
    return real + fake


def generator_adversarial_loss(fake_logits):
    """The decoder's side of the hinge game, per image: raise the
    discriminator's logits for its reconstructions."""
    return -_per_image_mean(ops.cast(fake_logits, "float32"))


def _per_image_mean(values):
    return ops.mean(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


def calibrated_scale(images, reconstructions, likelihood):
    """The maximum-likelihood decoder scale for this batch (Rybkin et al. 2021).

    For a Gaussian it is the root-mean-square error, for a Laplace the mean
    absolute error: the scale at which the likelihood balances itself
    against the KL, with no hand-tuned weight.
    """
    error = ops.cast(images, "float32") - ops.cast(reconstructions, "float32")
    if likelihood == "gaussian":
        scale = ops.sqrt(ops.mean(ops.square(error)))
    elif likelihood == "l1":
        scale = ops.mean(ops.abs(error))
    else:
        raise ValueError(f"a calibrated scale needs a gaussian or l1 likelihood, not {likelihood!r}")
    return ops.maximum(scale, 1e-3)


def kl_weight(step, beta, warmup_steps):
    """beta, ramped linearly from near 0 over the first `warmup_steps` steps."""
    if warmup_steps <= 0:
        return ops.convert_to_tensor(beta, "float32")
    progress = (ops.cast(step, "float32") + 1.0) / float(warmup_steps)
    return beta * ops.minimum(progress, 1.0)
