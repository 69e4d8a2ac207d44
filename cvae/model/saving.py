"""Saving and loading models, and where the default model is found."""

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from cvae.atomic import atomic_path
from cvae.errors import CvaeError, first_line

DEFAULT_MODEL_NAME = "cvae-faces.keras"


def _installed_models():
    """The folder of the models installed with the package (saved_models/ in
    the repository, mapped to cvae.saved_models by pyproject.toml)."""
    import importlib.resources

    try:
        return Path(str(importlib.resources.files("cvae.saved_models")))
    except ModuleNotFoundError:  # Running from a checkout that was never installed.
        return Path(__file__).resolve().parents[2] / "saved_models"


DEFAULT_MODEL_PATH = _installed_models() / DEFAULT_MODEL_NAME


def save_model(model, path):
    with atomic_path(path) as temporary:
        model.save(temporary)


def default_model_path():
    """The model used without --model: $CVAE_MODEL, else the installed default."""
    return Path(os.environ.get("CVAE_MODEL", DEFAULT_MODEL_PATH))


def load_model(path=None, precision=None):
    """Load a VAE saved as `.keras`, in Keras safe mode (no arbitrary code).

    path None loads the default model (saved_models/, or $CVAE_MODEL).
    precision None keeps the saved dtype policy. A policy name rebuilds the
    model in it, e.g. "float32" for inference on a CPU without bfloat16, and
    the optimizer state is then dropped. "auto" keeps the saved policy where
    this machine computes it natively and rebuilds in float32 where it would
    only emulate it (`cvae.precision.native_precision`): the CLI's default for
    generating and exploring.
    """
    import keras

    from cvae.model.vae import VAE

    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        hint = " (no default model has been trained yet; pass --model)" if path == DEFAULT_MODEL_PATH else ""
        raise CvaeError(f"no such model file: {path}{hint}")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        # Keras' own message for these is a paragraph about other formats.
        raise CvaeError(f"cannot load model {path}: not a .keras model file")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad file; all mean "unloadable".
        raise CvaeError(f"cannot load model {path}: {first_line(error)}") from None
    if not isinstance(model, VAE):
        raise CvaeError(f"{path} holds a {type(model).__name__}, not a cvae VAE")
    if precision == "auto":
        from cvae.precision import native_precision

        precision = native_precision(model.dtype_policy.name)
    if precision is not None and precision != model.dtype_policy.name:
        model = rebuilt(model, precision)
    return model


def in_float32(model):
    """`model` itself when it computes in float32, else a float32 copy.

    What the codec and the LiteRT files run: bfloat16 rounds differently on
    CPUs that have it natively and on those that emulate it, and LiteRT has
    no bfloat16 kernels, so only float32 decodes a file to the same image on
    every machine and runtime."""
    return model if model.dtype_policy.name == "float32" else rebuilt(model, "float32")


def rebuilt(model, precision):
    """An uncompiled copy of a VAE with the same weights, in `precision`."""
    from cvae.model.vae import VAE

    copy = VAE(model.config, seed=model.seed, dtype=precision, name=model.name)
    copy.set_weights(model.get_weights())
    return copy


def weights_sha256(model):
    """SHA-256 of a model's first-stage weights as float32: what the codec
    fingerprints files with, and what its codec table and LiteRT files record
    they were made for. The samplers (second stage) and the discriminator are
    left out: they take no part in coding, so retraining them leaves files,
    table and LiteRT files valid."""
    digest = hashlib.sha256()
    for weight in model.first_stage_weights():
        weight = np.ascontiguousarray(weight, dtype="<f4")
        digest.update(str(weight.shape).encode() + weight.tobytes())
    return digest.hexdigest()
