"""The face codec: an image's latent code, quantized, in a few dozen bytes.

compress:   image -> posterior mean -> quantized symbols -> `.cvae` bytes
decompress: `.cvae` bytes -> quantized code -> decoder -> image

Modes:
  float16  every dimension as a float16 (2 bytes each);
  int8     every dimension on 256 uniform levels between the code's extremes;
  entropy  each active dimension quantized with a step of `step` times its
           typical posterior standard deviation (the scale below which the
           decoder was trained to ignore changes), then arithmetic-coded under
           the discretized N(0, 1) prior; inactive dimensions cost nothing and
           decode to the prior mean. A file then costs about the information
           the code carries: its KL plus roughly 1.4 - ln(step) nats per active
           dimension.

The entropy mode needs the model's codec table (per-dimension posterior
spread, active dimensions and the default step), measured on training images
by `calibrate` and stored beside the model as `<model>.codec.json`.
"""

import dataclasses
import hashlib
import json
import math
import weakref
from pathlib import Path

import numpy as np

from cvae.atomic import write_text
from cvae.codec import entropy_coding
from cvae.codec import format as codec_format
from cvae.codec.format import FormatError, Header
from cvae.errors import CvaeError
from cvae.plotting import to_uint8

DEFAULT_MODE = "entropy"
TABLE_SUFFIX = ".codec.json"
# Symbols cover |z| <= 8 prior standard deviations; larger values are clamped.
_PRIOR_BOUND = 8.0
# Smaller steps would need tables of more than 16,000 symbols per dimension.
_SMALLEST_STEP = 1e-3
_FREQUENCY_TOTAL = 1 << 20
# Candidate steps, in posterior standard deviations, tried by `calibrate`.
CALIBRATION_STEPS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)


@dataclasses.dataclass(frozen=True)
class CodecTable:
    """What the entropy mode needs to know about a model, measured by `calibrate`."""

    posterior_std: tuple  # per dimension: geometric mean of the posterior sigma
    active: tuple  # per dimension: does its posterior mean vary across images?
    step: float  # default quantization step, in posterior standard deviations
    weights_sha256: str  # the weights it was measured for
    calibration: dict = dataclasses.field(default_factory=dict)  # how it was measured

    def quantization_steps(self, step):
        """The step of each active dimension, in latent units."""
        return step * np.asarray(self.posterior_std, np.float64)[np.asarray(self.active, bool)]

    def digest(self):
        return hashlib.sha256(np.asarray(self.posterior_std, "<f8").tobytes()
                              + bytes(np.asarray(self.active, np.uint8))).digest()

    def save(self, path):
        write_text(path, json.dumps(dataclasses.asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path):
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(**{**values, "posterior_std": tuple(values["posterior_std"]),
                          "active": tuple(values["active"])})
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise CvaeError(f"cannot read codec table {path}: {error}") from None


def table_path(model_path):
    return Path(model_path).with_suffix(TABLE_SUFFIX)


def weights_sha256(model):
    digest = hashlib.sha256()
    for weight in model.get_weights():
        weight = np.ascontiguousarray(weight, dtype="<f4")
        digest.update(str(weight.shape).encode() + weight.tobytes())
    return digest.hexdigest()


class Codec:
    """Compresses and decompresses images with one model (and its codec table)."""

    def __init__(self, model, table=None):
        self.model = model
        self.config = model.config
        self.weights_sha256 = weights_sha256(model)
        if table is not None and table.weights_sha256 != self.weights_sha256:
            raise CvaeError("the codec table was measured for other weights; "
                            "rerun `cvae calibrate` for this model")
        self.table = table
        self._prior_tables = {}

    def fingerprint(self, mode):
        digest = hashlib.sha256(bytes.fromhex(self.weights_sha256))
        if mode == "entropy":
            digest.update(self._require_table().digest())
        return digest.digest()[:codec_format.FINGERPRINT_BYTES]

    # --- batches ------------------------------------------------------------

    def compress_batch(self, images, mode=DEFAULT_MODE, step=None):
        """images (N, H, W, C) -> list of N `.cvae` byte strings."""
        if mode not in codec_format.MODES:
            raise CvaeError(f"unknown mode {mode!r}; choose one of {codec_format.MODES}")
        z_mean, _ = self.model.encode(images)
        fingerprint = self.fingerprint(mode)
        files = []
        for code in z_mean.astype(np.float64):
            parameters, payload = self._quantize(code, mode, step)
            header = Header(mode, fingerprint, self.config.image_size, self.config.channels,
                            self.config.latent_dim, parameters)
            files.append(codec_format.pack(header, payload))
        return files

    def decompress_batch(self, files):
        """list of `.cvae` byte strings -> uint8 images (N, H, W, C)."""
        return self.decode(np.stack([self.latent_code(data) for data in files]))

    def decode(self, codes):
        """Latent codes (N, latent_dim) -> uint8 images, as decompression writes them."""
        return to_uint8(self.model.decode(codes))

    # --- one file -----------------------------------------------------------

    def latent_code(self, data):
        """The dequantized latent code a `.cvae` file holds (checked against this model)."""
        header, payload = codec_format.parse(data)
        self._check_header(header)
        return self._dequantize(header, payload)

    def _check_header(self, header):
        config = self.config
        if header.mode == "entropy" and self.table is None:
            raise CvaeError("entropy-coded file, but this model has no codec table "
                            "(run `cvae calibrate`)")
        fingerprint = self.fingerprint(header.mode)
        if header.fingerprint != fingerprint:
            raise FormatError(f"made by another model (fingerprint {header.fingerprint.hex()}, "
                              f"this model's is {fingerprint.hex()})")
        made = (header.image_size, header.channels, header.latent_dim)
        expected = (config.image_size, config.channels, config.latent_dim)
        if made != expected:
            raise FormatError(f"made for {made[0]}x{made[0]}x{made[1]} images with {made[2]} "
                              f"latent dimensions, but this model has {expected}")

    # --- quantization -------------------------------------------------------

    def _quantize(self, code, mode, step):
        if mode == "float16":
            return (), code.astype("<f2").tobytes()
        if mode == "int8":
            low = float(np.float16(np.floor(code.min() * 64) / 64))
            high = float(np.float16(np.ceil(code.max() * 64) / 64))
            levels = np.round((code - low) / max(high - low, 1e-6) * 255)
            return (low, high), np.clip(levels, 0, 255).astype(np.uint8).tobytes()
        # The step travels as float16; quantize with exactly the value the reader sees.
        step = float(np.float16(self._require_table().step if step is None else step))
        steps = self._checked_steps(step)
        active = np.asarray(self.table.active, bool)
        symbols, tables = [], []
        for value, dimension_step in zip(code[active], steps):
            cumulative = self._prior_table(dimension_step)
            half_width = (len(cumulative) - 2) // 2
            symbols.append(int(np.clip(np.round(value / dimension_step), -half_width,
                                       half_width)) + half_width)
            tables.append(cumulative)
        return (step,), entropy_coding.encode(symbols, tables)

    def _dequantize(self, header, payload):
        latent_dim = header.latent_dim
        if header.mode == "float16":
            if len(payload) != 2 * latent_dim:
                raise FormatError(f"payload of {len(payload)} bytes; float16 needs {2 * latent_dim}")
            code = np.frombuffer(payload, "<f2").astype(np.float64)
            if not np.all(np.isfinite(code)):
                raise FormatError("the code holds values that are not finite")
            return code
        if header.mode == "int8":
            if len(payload) != latent_dim:
                raise FormatError(f"payload of {len(payload)} bytes; int8 needs {latent_dim}")
            low, high = header.parameters
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise FormatError(f"invalid int8 range [{low}, {high}]")
            levels = np.frombuffer(payload, np.uint8).astype(np.float64)
            return low + levels / 255 * max(high - low, 1e-6)
        (step,) = header.parameters
        steps = self._checked_steps(step)
        tables = [self._prior_table(dimension_step) for dimension_step in steps]
        symbols = entropy_coding.decode(payload, tables)
        code = np.zeros(latent_dim)
        half_widths = np.array([(len(table) - 2) // 2 for table in tables])
        code[np.asarray(self.table.active, bool)] = (np.array(symbols) - half_widths) * steps
        return code

    def _checked_steps(self, step):
        if not (math.isfinite(step) and step > 0):
            raise FormatError(f"invalid quantization step {step}")
        steps = self._require_table().quantization_steps(step)
        if len(steps) and steps.min() < _SMALLEST_STEP:
            raise FormatError(f"quantization step {step} is too fine for this model's table")
        return steps

    def _prior_table(self, step):
        """Cumulative frequencies of N(0, 1) discretized on bins of width `step`
        centred on multiples of it; the outermost bins take the tails."""
        if step not in self._prior_tables:
            half_width = math.ceil(_PRIOR_BOUND / step)
            edges = (np.arange(-half_width, half_width) + 0.5) * step
            # float64 and math.erf: encoder and decoder must derive identical tables.
            cdf = np.array([0.0] + [0.5 * (1.0 + math.erf(e / math.sqrt(2.0))) for e in edges]
                           + [1.0])
            symbols = 2 * half_width + 1
            frequencies = 1 + np.floor(np.diff(cdf) * (_FREQUENCY_TOTAL - symbols))
            self._prior_tables[step] = [0] + np.cumsum(frequencies.astype(np.int64)).tolist()
        return self._prior_tables[step]

    def _require_table(self):
        if self.table is None:
            raise CvaeError("the entropy mode needs the model's codec table "
                            f"(<model>{TABLE_SUFFIX}); make it with `cvae calibrate`")
        return self.table


def calibrate(model, images, max_psnr_loss=0.2, steps=CALIBRATION_STEPS, log=None):
    """Measure a model's codec table on (training) images.

    The default step is the coarsest of `steps` whose decompressed PSNR stays
    within `max_psnr_loss` dB of the unquantized reconstruction's.
    """
    from cvae import metrics  # Deferred: it loads TensorFlow.

    log = log or (lambda message: None)
    z_mean, z_log_var = model.encode(images)
    active = metrics.active_dimensions(z_mean)
    posterior_std = np.exp(np.mean(0.5 * z_log_var.astype(np.float64), axis=0))
    originals = to_uint8(images)
    reference = float(np.mean(metrics.psnr(originals / 255.0,
                                           to_uint8(model.decode(z_mean)) / 255.0)))
    log(f"{int(active.sum())} of {len(active)} dimensions active; unquantized PSNR "
        f"{reference:.2f} dB on {len(images)} images")
    table = CodecTable(tuple(posterior_std.tolist()), tuple(bool(a) for a in active),
                       steps[0], weights_sha256(model))
    codec = Codec(model, table)
    chosen, measured = None, {}
    for step in sorted(steps):
        files = codec.compress_batch(images, "entropy", step)
        psnr = float(np.mean(metrics.psnr(originals / 255.0,
                                          codec.decompress_batch(files) / 255.0)))
        mean_bytes = float(np.mean([len(f) for f in files]))
        measured[str(step)] = {"bytes": mean_bytes, "psnr": psnr}
        log(f"step {step:g}: {mean_bytes:.1f} bytes, PSNR {psnr:.2f} dB")
        if reference - psnr <= max_psnr_loss:
            chosen = step
    if chosen is None:
        raise CvaeError(f"no step in {list(steps)} keeps the PSNR within {max_psnr_loss} dB")
    return dataclasses.replace(table, step=chosen, calibration={
        "images": len(images), "max_psnr_loss_db": max_psnr_loss,
        "unquantized_psnr": reference, "steps": measured})


# --- the simple API: cvae.compress(image, model), cvae.decompress(data, model) ---

_CODECS = weakref.WeakKeyDictionary()


def load_codec(path=None, precision=None):
    """The Codec of a model file (default: the default model) with the table
    saved beside it (MODEL.codec.json), when that table was measured for these
    weights; found exactly like the mixture beside a model."""
    import warnings

    from cvae.saving import default_model_path, load_model

    path = Path(path) if path is not None else default_model_path()
    codec = Codec(load_model(path, precision=precision))  # Hashes the weights, once.
    if table_path(path).is_file():
        table = CodecTable.load(table_path(path))
        if table.weights_sha256 == codec.weights_sha256:
            codec.table = table
        else:
            warnings.warn(f"ignoring {table_path(path)}: it was measured for other weights "
                          f"(rerun `cvae calibrate`)")
    return codec


def codec_for(model, table=None):
    """A Codec for a model in memory, reused across calls with the same table."""
    codec = _CODECS.get(model)
    if codec is None or codec.table is not table:
        codec = _CODECS[model] = Codec(model, table)
    return codec


def compress(image, model, mode=DEFAULT_MODE, step=None, table=None):
    """One image (H, W, C), uint8 or float in [0, 1], at the model's size -> bytes."""
    return codec_for(model, table).compress_batch(np.asarray(image)[None], mode, step)[0]


def decompress(data, model, table=None):
    """`.cvae` bytes -> uint8 image (H, W, C)."""
    return codec_for(model, table).decompress_batch([data])[0]
