"""Figures: image grids and image files (Pillow), and plots (matplotlib); a
run's loss curves are drawn by `cvae.training.runs.plot_history`."""

from pathlib import Path

import numpy as np
from PIL import Image

from cvae.atomic import atomic_path, refuse_to_replace
from cvae.batching import batches
from cvae.errors import CvaeError

GRID_GAP = 2


def to_uint8(images):
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def image_grid(rows):
    """A list of image batches (each (N, H, W, C)) -> one uint8 picture, a row per batch."""
    rows = [to_uint8(row) for row in rows]
    height, width, channels = rows[0].shape[1:]
    columns = max(len(row) for row in rows)
    grid = np.full((len(rows) * (height + GRID_GAP) - GRID_GAP,
                    columns * (width + GRID_GAP) - GRID_GAP, channels), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = r * (height + GRID_GAP), c * (width + GRID_GAP)
            grid[top:top + height, left:left + width] = image
    return grid


def tiled(images, columns):
    """A batch of images (N, H, W, C) -> one picture, `columns` to a row."""
    return image_grid(list(batches(images, columns)))


# The file formats an output image may be written in, by suffix.
IMAGE_FORMATS = {".png": ("PNG", {}), ".jpg": ("JPEG", {"quality": 95}),
                 ".jpeg": ("JPEG", {"quality": 95}), ".webp": ("WEBP", {"lossless": True})}


def check_image_path(path, force=True):
    """The suffix of an image output path, or a CvaeError if no format is known
    for it, or if something is there already (unless `force`, for a file)."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise CvaeError(f"cannot write {path}: name a .png, .jpg or .webp file")
    if Path(path).is_dir():
        raise CvaeError(f"cannot write {path}: it is a folder")
    refuse_to_replace(path, force)
    return suffix


def save_image(image, path):
    """Write an image (uint8, or float in [0, 1]) atomically, in the format its
    suffix names (.png, .jpg/.jpeg or .webp); any other suffix is refused."""
    image_format, options = IMAGE_FORMATS[check_image_path(path)]
    image = to_uint8(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    with atomic_path(path) as temporary:
        Image.fromarray(image).save(temporary, format=image_format, **options)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path, dpi=100):
    plt = pyplot()
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi)
    plt.close(figure)


def plot_latent_histograms(codes, dimensions, kl_per_dimension, path, columns=8):
    """One histogram per chosen dimension of `codes`, with the N(0, 1) density over it."""
    plt = pyplot()
    rows = -(-len(dimensions) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 1.6 * rows),
                                squeeze=False)
    grid = np.linspace(-4, 4, 200)
    density = np.exp(-0.5 * grid ** 2) / np.sqrt(2 * np.pi)
    for axis, dimension in zip(axes.flat, dimensions):
        axis.hist(np.clip(codes[:, dimension], -4, 4), bins=40, range=(-4, 4), density=True,
                  color="tab:blue", alpha=0.7)
        axis.plot(grid, density, color="tab:red", linewidth=1)
        axis.set_title(f"z{dimension}  KL {kl_per_dimension[dimension]:.2f}", fontsize=7)
        axis.set_yticks([])
        axis.tick_params(labelsize=6)
    for axis in list(axes.flat)[len(dimensions):]:
        axis.axis("off")
    save_figure(figure, path)


def plot_kl_per_dimension(kl_per_dimension, path):
    """Bars of each dimension's mean KL (nats), largest first."""
    plt = pyplot()
    order = np.argsort(-np.asarray(kl_per_dimension), kind="stable")
    figure, axis = plt.subplots(figsize=(max(4, 0.06 * len(order) + 2), 2.8))
    axis.bar(range(len(order)), np.asarray(kl_per_dimension)[order], color="tab:blue")
    axis.set_xlabel("latent dimensions, sorted by KL")
    axis.set_ylabel("KL (nats)")
    save_figure(figure, path)
