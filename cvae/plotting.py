"""Figures: image grids (Pillow) and loss curves (matplotlib)."""

import numpy as np
from PIL import Image

from cvae.files import atomic_path, read_history

_GAP = 2


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
    grid = np.full((len(rows) * (height + _GAP) - _GAP,
                    columns * (width + _GAP) - _GAP, channels), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = r * (height + _GAP), c * (width + _GAP)
            grid[top:top + height, left:left + width] = image
    return grid


def save_png(image, path):
    image = to_uint8(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    with atomic_path(path) as temporary:
        Image.fromarray(image).save(temporary, format="PNG")


def plot_history(csv_path, png_path):
    """Loss curves (train and validation) from a Keras CSVLogger file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # A resumed run may log an epoch twice; the later line wins.
    rows = {int(row["epoch"]): row for row in read_history(csv_path)}
    if not rows:
        return
    epochs = sorted(rows)
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for axis, name in zip(axes, ("loss", "reconstruction_loss", "kl_loss")):
        for prefix, style in (("", "-"), ("val_", "--")):
            key = prefix + name
            if key in rows[epochs[0]]:
                axis.plot([e + 1 for e in epochs], [rows[e][key] for e in epochs],
                          style, label=key)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.legend()
    figure.tight_layout()
    with atomic_path(png_path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
