"""Image-quality and distribution metrics, on numpy images in [0, 1] shaped (N, H, W, C).

Nothing here knows about the VAE, so the same functions score the model,
the PCA baseline and real-vs-real floors alike. The image filters run in
`keras.ops`, so they work on every backend.
"""

import math

import numpy as np
from keras import ops

from cvae.model import losses

# Karras et al. 2018 ("Progressive Growing of GANs", appendix D): 7x7
# neighbourhoods, 128 per image and level, pyramid down to 16x16, 512
# projections repeated 4 times, distances reported x 1e3.
SWD_PATCH = 7
SWD_PATCHES_PER_IMAGE = 128
SWD_SMALLEST_LEVEL = 16
SWD_DIRECTIONS = 512
SWD_REPEATS = 4
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def psnr(images, reconstructions):
    """Peak signal-to-noise ratio in dB per image (peak 1.0), shape (N,)."""
    mse = mean_squared_error(images, reconstructions)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def mean_squared_error(images, reconstructions):
    """Mean squared error per image, shape (N,)."""
    difference = np.asarray(images, np.float64) - np.asarray(reconstructions, np.float64)
    return np.mean(np.square(difference).reshape(len(difference), -1), axis=1)


def ssim(images, reconstructions):
    """Structural similarity per image, shape (N,): Wang et al. 2004 as
    tf.image.ssim computes it (an 11x11 Gaussian window of sigma 1.5, valid
    positions only, no covariance compensation, peak 1.0), averaged over
    positions and channels."""
    x = ops.convert_to_tensor(np.asarray(images, np.float32))
    y = ops.convert_to_tensor(np.asarray(reconstructions, np.float32))
    size = min(11, x.shape[1], x.shape[2])
    window = _depthwise(_gaussian_window(size, 1.5), x.shape[-1])

    def local_mean(values):
        return ops.depthwise_conv(values, window, strides=1, padding="valid")

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mean_x, mean_y = local_mean(x), local_mean(y)
    product, squares = 2.0 * mean_x * mean_y, ops.square(mean_x) + ops.square(mean_y)
    luminance = (product + c1) / (squares + c1)
    contrast_structure = ((2.0 * local_mean(x * y) - product + c2)
                          / (local_mean(ops.square(x) + ops.square(y)) - squares + c2))
    return ops.convert_to_numpy(ops.mean(luminance * contrast_structure, axis=(1, 2, 3)))


def _gaussian_window(size, sigma):
    coordinates = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    weights = np.exp(-0.5 * (coordinates[:, None] ** 2 + coordinates[None, :] ** 2) / sigma ** 2)
    return weights / weights.sum()


def _depthwise(kernel, channels):
    """A 2-D kernel as a depthwise convolution's, the same for each channel."""
    return np.tile(np.asarray(kernel, np.float32)[:, :, None, None], (1, 1, channels, 1))


def downsample(images, size):
    """Area-average downsampling to size x size (as published 64x64 results use)."""
    images = np.asarray(images, np.float32)
    height, width = images.shape[1:3]
    if height % size or width % size:
        # A fractional ratio: area resizing exists on TensorFlow alone.
        return ops.convert_to_numpy(ops.image.resize(images, (size, size), interpolation="area"))
    # A whole ratio: the area average is the mean of each block, on every backend.
    block = (height // size, width // size)
    return ops.convert_to_numpy(ops.average_pool(images, block, strides=block, padding="valid"))


def laplacian_pyramid(images, smallest=SWD_SMALLEST_LEVEL):
    """Levels from full resolution down to `smallest` pixels; the last is the Gaussian residue."""
    current = ops.convert_to_tensor(np.asarray(images, np.float32))
    levels = []
    while current.shape[1] // 2 >= smallest and current.shape[2] // 2 >= smallest:
        smaller = _blur(current)[:, ::2, ::2, :]
        levels.append(current - _upsample(smaller, current.shape[1:3]))
        current = smaller
    levels.append(current)
    return [ops.convert_to_numpy(level) for level in levels]


def _blur(images):
    kernel = _depthwise(np.outer(_BINOMIAL, _BINOMIAL), images.shape[-1])
    padded = ops.pad(images, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="symmetric")
    return ops.depthwise_conv(padded, kernel, strides=1, padding="valid")


def _upsample(images, size):
    # As pyrUp: zero-insertion, then the same binomial blur (x4 to keep the
    # energy). A one-pixel mirrored border first keeps the edges unbiased.
    images = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric")
    batch, height, width, channels = images.shape
    rows = ops.reshape(ops.stack([images, ops.zeros_like(images)], axis=2),
                       (batch, 2 * height, width, channels))
    full = ops.reshape(ops.stack([rows, ops.zeros_like(rows)], axis=3),
                       (batch, 2 * height, 2 * width, channels))
    return 4.0 * _blur(full)[:, 2:2 + size[0], 2:2 + size[1], :]


def pyramid_descriptors(images, patches_per_image=SWD_PATCHES_PER_IMAGE, seed=0):
    """Per pyramid level, random 7x7 patches flattened: a list of (N * patches, 49 * C) arrays."""
    rng = np.random.default_rng(seed)
    descriptors = []
    for level in laplacian_pyramid(images):
        count, height, width, _ = level.shape
        if height < SWD_PATCH or width < SWD_PATCH:
            raise ValueError(f"images of {height}x{width} are too small for {SWD_PATCH}x{SWD_PATCH} patches")
        image_index = np.repeat(np.arange(count), patches_per_image)
        top = rng.integers(0, height - SWD_PATCH + 1, image_index.shape)
        left = rng.integers(0, width - SWD_PATCH + 1, image_index.shape)
        offsets = np.arange(SWD_PATCH)
        patches = level[image_index[:, None, None],
                        top[:, None, None] + offsets[None, :, None],
                        left[:, None, None] + offsets[None, None, :]]
        descriptors.append(patches.reshape(len(image_index), -1))
    return descriptors


def sliced_wasserstein(reference, other, directions=SWD_DIRECTIONS, repeats=SWD_REPEATS, seed=0):
    """Sliced Wasserstein distance between two equally sized sets of vectors."""
    count = min(len(reference), len(other))
    rng = np.random.default_rng(seed)
    reference = reference[rng.permutation(len(reference))[:count]]
    other = other[rng.permutation(len(other))[:count]]
    distances = []
    for _ in range(repeats):
        projection = rng.standard_normal((reference.shape[1], directions)).astype(np.float32)
        projection /= np.linalg.norm(projection, axis=0, keepdims=True)
        projected_reference = np.sort(reference @ projection, axis=0)
        projected_other = np.sort(other @ projection, axis=0)
        distances.append(np.mean(np.abs(projected_reference - projected_other)))
    return float(np.mean(distances))


def swd(reference_images, images, seed=0):
    """SWD x 1e3 between two image sets on Laplacian-pyramid 7x7 patches.

    Returns {"levels": [finest ... coarsest], "mean": average over levels}.
    Unlike Karras et al., who normalise each set by its own statistics, both
    sets are normalised per channel by the reference's mean and std, so a
    global colour or brightness shift counts as a difference.
    """
    reference_levels = pyramid_descriptors(reference_images, seed=seed)
    # The same patch positions in both sets, so identical sets are at distance 0.
    other_levels = pyramid_descriptors(images, seed=seed)
    channels = reference_images.shape[-1]
    per_level = []
    for reference, other in zip(reference_levels, other_levels):
        mean, std = _channel_statistics(reference, channels)
        per_level.append(1e3 * sliced_wasserstein((reference - mean) / std, (other - mean) / std,
                                                  seed=seed))
    return {"levels": per_level, "mean": float(np.mean(per_level))}


def _channel_statistics(descriptors, channels):
    by_channel = descriptors.reshape(len(descriptors), -1, channels)
    mean = by_channel.mean(axis=(0, 1))
    std = by_channel.std(axis=(0, 1)) + 1e-8
    return np.tile(mean, by_channel.shape[1]), np.tile(std, by_channel.shape[1])


def active_dimensions(z_mean, threshold=0.01):
    """Mask of the dimensions whose posterior mean varies across images:
    Var_x(E[z_d | x]) > threshold (Burda et al. 2016)."""
    return np.var(np.asarray(z_mean, np.float64), axis=0) > threshold


def active_units(z_mean, threshold=0.01):
    """How many dimensions are active (see `active_dimensions`)."""
    return int(np.sum(active_dimensions(z_mean, threshold)))


def kl_per_dimension(z_mean, z_log_var):
    """Mean over images of the closed-form KL to N(0, 1), per latent dimension."""
    terms = losses.kl_per_latent(np.asarray(z_mean, np.float64), np.asarray(z_log_var, np.float64))
    return np.mean(ops.convert_to_numpy(terms), axis=0)


def frechet_distance(features_a, features_b):
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula)."""
    a = features_a - features_a.mean(0)
    b = features_b - features_b.mean(0)
    dof_a, dof_b = len(a) - 1, len(b) - 1
    if min(len(a), len(b)) <= a.shape[1]:
        # With fewer samples than features, tr sqrt(Cov_a Cov_b) is the sum of
        # the singular values of A B^T / sqrt(dof_a dof_b): a small SVD instead
        # of square roots of 2048 x 2048 matrices.
        cross = np.sum(np.linalg.svd(a @ b.T, compute_uv=False)) / math.sqrt(dof_a * dof_b)
    else:
        # tr sqrt(A B) = tr sqrt(sqrt(A) B sqrt(A)), whose argument is symmetric PSD.
        root_a = _psd_sqrt(a.T @ a / dof_a)
        product = root_a @ (b.T @ b / dof_b) @ root_a
        cross = np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh(product), 0.0)))
    mean_difference = features_a.mean(0) - features_b.mean(0)
    return float(np.sum(mean_difference ** 2) + np.sum(a ** 2) / dof_a + np.sum(b ** 2) / dof_b
                 - 2.0 * cross)


def _psd_sqrt(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.maximum(values, 0.0))) @ vectors.T


def bits_per_dimension(negative_log_likelihood, dimensions, levels=256):
    """Bits per sub-pixel of 8-bit data from a continuous density's NLL (nats per image).

    The density is evaluated on uniformly dequantized pixels y = (k + u) / (levels - 1),
    u ~ U[0, 1), so each of the `levels` values owns a cell of width 1 / (levels - 1):
    -log P(k) <= E_u[-log p(y)] + D log(levels - 1).
    """
    return (negative_log_likelihood + dimensions * math.log(levels - 1)) / (dimensions * math.log(2.0))
