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
    "VAE": "cvae.model",
    "default_optimizer": "cvae.model",
    "VAEConfig": "cvae.config",
    "PRESETS": "cvae.config",
    "get_preset": "cvae.config",
    "Sampling": "cvae.layers",
    "load_model": "cvae.saving",
    "save_model": "cvae.saving",
    "CvaeError": "cvae.errors",
    "TrainOptions": "cvae.runs",
    "train": "cvae.training",
    "read_dataset": "cvae.data",
    "make_dataset": "cvae.data",
    "evaluate": "cvae.evaluation",
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
