"""cvae: a convolutional variational autoencoder for 128x128 RGB faces.

    import cvae
    model = cvae.load_model()            # the default model (saved_models/)
    codec = cvae.load_codec()            # the same model with its codec table
    z_mean, z_log_var = model.encode(images)
    faces = model.generate(16, seed=0)

TensorFlow is imported on first use of a name below, so `cvae --help` stays fast.
"""

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "VAE": "cvae.model.vae",
    "default_optimizer": "cvae.training.schedules",
    "VAEConfig": "cvae.model.config",
    "PRESETS": "cvae.model.config",
    "get_preset": "cvae.model.config",
    "Sampling": "cvae.model.layers",
    "load_model": "cvae.model.saving",
    "save_model": "cvae.model.saving",
    "CvaeError": "cvae.errors",
    "TrainOptions": "cvae.training.runs",
    "train": "cvae.training.trainer",
    "Framing": "cvae.data.image_files",
    "load_face": "cvae.data.image_files",
    "read_dataset": "cvae.data.datasets",
    "make_dataset": "cvae.data.datasets",
    "evaluate": "cvae.evaluation.evaluate",
    "compress": "cvae.codec",
    "decompress": "cvae.codec",
    "Codec": "cvae.codec",
    "load_codec": "cvae.codec",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cvae' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
