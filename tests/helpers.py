"""Small things many tests share: a tiny configuration and generated images
(the tests never need ../shared)."""

import numpy as np
from PIL import Image

from cvae.model.config import VAEConfig

TINY = VAEConfig(image_size=16, filters=(8, 16), dense_units=(16,), latent_dim=4,
                 likelihood="gaussian", decoder_scale=0.1)


def smooth_images(n, size=16, channels=3, seed=0):
    """Blurry colour blobs: structure a tiny VAE can learn in a few steps."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    centres = rng.uniform(0.2, 0.8, (n, 2, 1, 1))
    colours = rng.uniform(0.1, 0.9, (n, 1, 1, channels))
    blob = np.exp(-((x - centres[:, 0]) ** 2 + (y - centres[:, 1]) ** 2) / 0.05)[..., None]
    return np.round(255 * (0.1 + 0.8 * blob * colours)).astype(np.uint8)


def write_image_folder(folder, n=12, size=(24, 20), seed=0):
    """n JPEG/PNG files of a given (width, height), some in a nested folder."""
    images = smooth_images(n, size=max(size), seed=seed)
    for index, array in enumerate(images):
        target = folder / ("nested/deeper" if index % 3 == 0 else "") / f"face_{index:03d}"
        target.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(array).crop((0, 0) + size)
        picture.save(target.with_suffix(".png" if index % 2 else ".jpg"))
    return folder


def tiny_model_file(folder):
    """A tiny untrained model saved in `folder`, with a codec table beside it."""
    from cvae.codec import CodecTable, table_path, weights_sha256
    from cvae.model.saving import save_model
    from cvae.model.vae import VAE

    model = VAE(TINY, seed=0)
    path = folder / "tiny.keras"
    save_model(model, path)
    CodecTable((0.05, 0.1, 0.05, 0.2), (True, True, False, True), 1.0,
               weights_sha256(model)).save(table_path(path))
    return path
