"""The codec's light runtime: a model's encoder and decoder as LiteRT files,
run without importing TensorFlow or Keras.

Importing TensorFlow and building a Keras model takes about five seconds,
which is most of a one-file `cvae compress`. LiteRT's interpreter (the
`ai-edge-litert` wheel) starts in a tenth of a second. `write_litert_files`
(run by `cvae export`, `cvae second-stage` and `cvae export-litert`) converts
a model's encoder (image -> z_mean, z_log_var) and decoder (z -> image) into

    MODEL.encoder.tflite, MODEL.decoder.tflite, MODEL.litert.json

beside MODEL.keras; the JSON records the shapes, the weights' hash the codec
fingerprints files with, and the hash of the .keras file they were made from,
so files that no longer match their model are never used. The bitstream is
defined by the code values, not by the runtime: a file compressed on one
path decompresses on the other.
"""

import functools
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from cvae.atomic import atomic_path, write_text
from cvae.batching import batches
from cvae.errors import CvaeError
from cvae.quiet import stderr_muted

ENCODER_SUFFIX = ".encoder.tflite"
DECODER_SUFFIX = ".decoder.tflite"
RECORD_SUFFIX = ".litert.json"
_THREADS = 2
# The encoder and decoder are exported for batches of any size. LiteRT runs
# them fastest a few dozen images at a time: at a few hundred, the decoder's
# activations fall out of the cache and each face takes longer.
_BATCH = 32


def litert_paths(model_path):
    """(encoder, decoder, record) paths beside a model file."""
    model_path = Path(model_path)
    return tuple(model_path.with_suffix(suffix)
                 for suffix in (ENCODER_SUFFIX, DECODER_SUFFIX, RECORD_SUFFIX))


def file_sha256(path):
    """SHA-256 of a file, remembered while its size and modification time stay
    the same: one compress checks the same model files up to three times
    (the CLI's choice of runtime, load_codec's, LiteModel's), tens of MB each."""
    status = Path(path).stat()
    return _file_sha256(str(Path(path).resolve()), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _file_sha256(path, size, mtime_ns):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_litert_files(model, model_path):
    """Convert a VAE's encoder and decoder to LiteRT files beside `model_path`
    (which must already hold the saved model). Converts in float32: the
    interpreter has no bfloat16 kernels."""
    import keras

    from cvae.model.saving import in_float32, weights_sha256

    model = in_float32(model)
    config = model.config
    encoder_path, decoder_path, record_path = litert_paths(model_path)
    # The encoder's third output is a sample; the codec needs only mean and log-variance.
    encoder = keras.Model(model.encoder.inputs, model.encoder.outputs[:2])
    for network, path, shape in (
            (encoder, encoder_path, (None, *config.image_shape)),
            (model.decoder, decoder_path, (None, config.latent_dim))):
        with atomic_path(path) as temporary:
            network.export(str(temporary), format="litert", verbose=False,
                           input_signature=[keras.InputSpec(shape=shape, dtype="float32")])
    record = {"image_size": config.image_size, "channels": config.channels,
              "latent_dim": config.latent_dim, "weights_sha256": weights_sha256(model),
              "model_sha256": file_sha256(model_path),
              "encoder_sha256": file_sha256(encoder_path),
              "decoder_sha256": file_sha256(decoder_path)}
    write_text(record_path, json.dumps(record, indent=1) + "\n")
    return encoder_path, decoder_path, record_path


def litert_status(model_path):
    """(usable, why not): whether the LiteRT files beside a model exist and
    were made from exactly this model file."""
    encoder_path, decoder_path, record_path = litert_paths(model_path)
    if not Path(model_path).is_file():
        return False, f"no such model file: {model_path}"
    if not all(path.is_file() for path in (encoder_path, decoder_path, record_path)):
        return False, f"no LiteRT files beside {model_path}"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        expected = (record["model_sha256"], record["encoder_sha256"], record["decoder_sha256"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        return False, f"cannot read {record_path}: {error}"
    found = tuple(file_sha256(path) for path in (model_path, encoder_path, decoder_path))
    if found != expected:
        return False, (f"the LiteRT files beside {model_path} were made from another version "
                       f"of it (rerun `cvae export-litert --model {model_path}`)")
    return True, ""


class LiteModel:
    """A VAE's encode and decode, run by the LiteRT interpreter: the part of
    `cvae.model.vae.VAE`'s interface that the codec uses (config, encode, decode)."""

    def __init__(self, model_path):
        from ai_edge_litert.interpreter import Interpreter

        usable, why_not = litert_status(model_path)
        if not usable:
            raise CvaeError(why_not)
        encoder_path, decoder_path, record_path = litert_paths(model_path)
        record = json.loads(record_path.read_text(encoding="utf-8"))
        self.config = SimpleNamespace(
            image_size=record["image_size"], channels=record["channels"],
            latent_dim=record["latent_dim"],
            image_shape=(record["image_size"], record["image_size"], record["channels"]))
        self.weights_sha256 = record["weights_sha256"]
        self._encoder = Interpreter(str(encoder_path), num_threads=_THREADS).get_signature_runner()
        self._decoder = Interpreter(str(decoder_path), num_threads=_THREADS).get_signature_runner()
        # The interpreter announces its CPU delegate on stderr at the first
        # inference; make that first one a silent call on a code of zeros.
        with stderr_muted():
            self._decoder(args_0=np.zeros((1, self.config.latent_dim), np.float32))

    def encode(self, images):
        """images (N, H, W, C), uint8 or float in [0, 1] -> (z_mean, z_log_var)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != self.config.image_shape:
            raise ValueError(f"images must have shape (N, {', '.join(map(str, self.config.image_shape))}), "
                             f"got {images.shape}")
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        outputs = [self._encoder(args_0=np.ascontiguousarray(chunk, np.float32))
                   for chunk in batches(images, _BATCH)]
        # The exported signature names the outputs in order: output_0 is z_mean.
        return (np.concatenate([o["output_0"] for o in outputs]),
                np.concatenate([o["output_1"] for o in outputs]))

    def decode(self, z):
        """z (N, latent_dim) -> images (N, H, W, C), float32 in [0, 1]."""
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must have shape (N, {self.config.latent_dim}), got {z.shape}")
        return np.concatenate([self._decoder(args_0=np.ascontiguousarray(chunk))["output_0"]
                               for chunk in batches(z, _BATCH)])

