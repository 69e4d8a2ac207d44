"""The face codec: an image's latent code, quantized, in a few dozen bytes.

compress:   image -> posterior mean -> quantized symbols -> `.cvae` bytes
decompress: `.cvae` bytes -> quantized code -> decoder -> image

Modes:
  float16  every dimension as a float16 (2 bytes each): the unquantized model;
  int8     every dimension on 256 uniform levels between the code's extremes;
  entropy  each active dimension quantized with a step of `step` times its
           typical posterior standard deviation (the scale below which the
           decoder was trained to ignore changes), then range-coded under a
           Gaussian with the spread the codes of training faces have;
           inactive dimensions cost nothing and decode to the prior mean.
           The step is the rate knob: a quality level names a calibrated
           step, and `max_bytes` finds the finest step whose file fits.

The entropy mode needs the model's codec table (per-dimension posterior
spread and code spread, active dimensions, a step per quality level),
measured on training images by `calibrate` and stored beside the model as
`<model>.codec.json`.
"""

import dataclasses
import hashlib
import json
import math
import weakref
from pathlib import Path

import numpy as np

from cvae.atomic import write_text
from cvae.codec import detail, entropy_coding
from cvae.codec import format as codec_format
from cvae.codec.format import FormatError, Header
from cvae.codec.litert import LiteModel, litert_status
from cvae.errors import CvaeError
from cvae.figures import to_uint8
from cvae.model.saving import weights_sha256

DEFAULT_MODE = "entropy"
# The modes whose files need the codec table (and carry its digest).
_TABLE_MODES = ("entropy", "detail")
# The detail mode's rung when none is named (cvae.codec.detail.RUNGS): 32 x 32
# at WebP quality 30, about 195 bytes in all on the training share.
DEFAULT_RUNG = 5
# Under the detail layer the code is quantized at this quality level's step:
# the layer corrects what a coarser code loses, and on the shipped model's
# held-out training share the "low" step (24) saved about 10 bytes a file
# against "medium" (12) at the same identity distance, rung for rung
# (research/identity/ladder_study.py choose --base-steps 24,48).
DETAIL_CODE_QUALITY = "low"
TABLE_SUFFIX = ".codec.json"
# Symbols cover |z| <= 8 prior standard deviations; larger values are clamped.
_PRIOR_BOUND = 8.0
# Finer steps would need ranges of more than 16,000 symbols.
_SMALLEST_STEP = 1e-3
# Candidate steps, in posterior standard deviations, tried by `calibrate`.
CALIBRATION_STEPS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)
# The quality levels: each is the coarsest calibration step whose PSNR stays
# within this many dB of the unquantized reconstruction's. "medium" is the
# default; `--mode float16` is the unquantized model itself.
QUALITY_LEVELS = {"high": 0.05, "medium": 0.2, "low": 1.0}
DEFAULT_QUALITY = "medium"
# Steps `max_bytes` chooses from: a quarter octave apart, 0.25 to 1024 (where
# nearly every symbol is the prior's mean and a file is little more than its
# header).
MAX_BYTES_STEPS = tuple(0.25 * 2 ** (k / 4) for k in range(49))


@dataclasses.dataclass(frozen=True)
class CodecTable:
    """What the entropy mode needs to know about a model, measured by `calibrate`."""

    posterior_std: tuple  # per dimension: geometric mean of the posterior sigma
    active: tuple  # per dimension: does its posterior mean vary across images?
    step: float  # default quantization step ("medium"), in posterior standard deviations
    weights_sha256: str  # the weights it was measured for
    calibration: dict = dataclasses.field(default_factory=dict)  # how it was measured
    # per dimension: standard deviation of the posterior mean over training
    # faces, the spread the entropy coder's Gaussian assumes
    code_std: tuple = ()
    quality_steps: dict = dataclasses.field(default_factory=dict)  # level -> step

    def quantization_steps(self, step):
        """The step of each active dimension, in latent units."""
        return step * np.asarray(self.posterior_std, np.float64)[np.asarray(self.active, bool)]

    def active_code_std(self):
        spread = np.asarray(self.code_std or [1.0] * len(self.active), np.float64)
        return spread[np.asarray(self.active, bool)]

    def step_for(self, quality):
        if quality not in QUALITY_LEVELS:
            raise CvaeError(f"unknown quality {quality!r}; choose one of {list(QUALITY_LEVELS)}")
        if quality not in self.quality_steps:
            raise CvaeError("this codec table has no quality levels; rerun `cvae calibrate`")
        return self.quality_steps[quality]

    def digest(self):
        return hashlib.sha256(np.asarray(self.posterior_std, "<f8").tobytes()
                              + bytes(np.asarray(self.active, np.uint8))
                              + np.asarray(self.code_std, "<f8").tobytes()).digest()

    def save(self, path):
        write_text(path, json.dumps(dataclasses.asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path):
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(**{**values, "posterior_std": tuple(values["posterior_std"]),
                          "active": tuple(values["active"]),
                          "code_std": tuple(values.get("code_std", ()))})
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise CvaeError(f"cannot read codec table {path}: {error}") from None


def table_path(model_path):
    return Path(model_path).with_suffix(TABLE_SUFFIX)


class Codec:
    """Compresses and decompresses images with one model (and its codec table).

    `model` is a `cvae.model.vae.VAE` or a `cvae.codec.litert.LiteModel` (which
    carries the hash of the weights it was converted from). A VAE saved in
    mixed precision is run as a float32 copy (`cvae.model.saving.in_float32`), as
    the LiteRT files are: a file decodes to the same image on either runtime
    and on every CPU."""

    def __init__(self, model, table=None, refine_steps=0):
        if isinstance(model, LiteModel):
            if refine_steps:
                raise CvaeError("refining codes needs the Keras runtime (--runtime keras): "
                                "the LiteRT files cannot take gradients")
        else:
            from cvae.model.saving import in_float32

            model = in_float32(model)
        self.model = model
        self.config = model.config
        self.refine_steps = refine_steps
        self.weights_sha256 = getattr(model, "weights_sha256", None) or weights_sha256(model)
        if table is not None and table.weights_sha256 != self.weights_sha256:
            raise CvaeError("the codec table was measured for other weights; "
                            "rerun `cvae calibrate` for this model")
        self.table = table

    def fingerprint(self, mode):
        digest = hashlib.sha256(bytes.fromhex(self.weights_sha256))
        if mode in _TABLE_MODES:
            digest.update(self._require_table().digest())
        return digest.digest()[:codec_format.FINGERPRINT_BYTES]

    # --- batches ------------------------------------------------------------

    def compress_batch(self, images, mode=DEFAULT_MODE, step=None, max_bytes=None, rung=None,
                       errors="raise", encoded=None):
        """images (N, H, W, C) -> list of N `.cvae` byte strings.

        Entropy mode: `step` (posterior standard deviations; default the
        table's), or `max_bytes`: the best file of the rate ladder that fits
        (CvaeError if none does): the highest rung of the detail layer
        (`cvae.codec.detail.RUNGS`, on the code at DETAIL_CODE_QUALITY's
        step) that fits, else the code alone at the finest step of
        MAX_BYTES_STEPS that fits. Detail mode: the code at `step` (default
        DETAIL_CODE_QUALITY's) plus the detail layer at `rung` (an index into
        RUNGS; default DEFAULT_RUNG). errors "return": an image whose file
        cannot fit `max_bytes` gets its CvaeError in its place in the list,
        and the others their files (a batch command reports it and goes on).
        `encoded`: the model's (z_mean, z_log_var) of `images`, where the
        caller has them already (see `encode`)."""
        if mode not in codec_format.MODES:
            raise CvaeError(f"unknown mode {mode!r}; choose one of {codec_format.MODES}")
        if max_bytes is not None and mode != "entropy":
            raise CvaeError("a byte budget needs the entropy mode")
        if rung is not None and mode != "detail":
            raise CvaeError("a detail rung needs the detail mode")
        if mode in _TABLE_MODES:
            self._require_table()
        codes = self.encode(images, encoded)
        if mode == "detail" or max_bytes is not None:
            return self._with_detail(images, codes, step, max_bytes,
                                     DEFAULT_RUNG if rung is None else rung, errors)
        return [self.pack(code, mode, step) for code in codes]

    def _with_detail(self, images, codes, step, max_bytes, rung, errors="raise"):
        """Files with the detail layer: at `rung`, or (with `max_bytes`) the
        highest rung that fits, else the finest code alone that does."""
        if not 0 <= rung < len(detail.RUNGS):
            raise CvaeError(f"no detail rung {rung}: there are {len(detail.RUNGS)} (0 to "
                            f"{len(detail.RUNGS) - 1})")
        table = self._require_table()
        if step is None:
            step = table.quality_steps.get(DETAIL_CODE_QUALITY, table.step)
        step = float(np.float16(step))
        code_files = [self._quantize(code, "entropy", step)[1] for code in codes]
        header = Header("detail", self.fingerprint("detail"), (step,))
        # What the decoder will see: the quantized codes' reconstructions.
        bases = self.decode(np.stack([self._dequantize(Header("entropy", b"", (step,)), payload)
                                      for payload in code_files]))
        originals = to_uint8(images)
        files = []
        for code, payload, original, base in zip(codes, code_files, originals, bases):
            rungs = range(len(detail.RUNGS) - 1, -1, -1) if max_bytes is not None else [rung]
            chosen = None
            for index in rungs:
                frame = detail.encode(original, base, *detail.RUNGS[index])
                data = codec_format.pack(header, codec_format.join_detail(payload, frame))
                if max_bytes is None or len(data) <= max_bytes:
                    chosen = data
                    break
            if chosen is None:
                try:
                    chosen = self._fitted(np.asarray(code, np.float64), max_bytes)
                except CvaeError as error:
                    if errors != "return":
                        raise
                    chosen = error
            files.append(chosen)
        return files

    def encode(self, images, encoded=None):
        """images (N, H, W, C) -> the codes that compression quantizes: the
        encoder's means, refined by `refine_steps` steps (`cvae.model.refinement`).
        `encoded`: the model's (z_mean, z_log_var) of `images`, if the caller
        has them already: compressing with an anomaly score shares one
        encoder pass between the two."""
        z_mean = self.model.encode(images)[0] if encoded is None else encoded[0]
        if self.refine_steps:
            return self.model.refine(images, z_mean, self.refine_steps)
        return z_mean

    def pack(self, code, mode=DEFAULT_MODE, step=None, max_bytes=None):
        """One latent code (the posterior mean) -> `.cvae` bytes (see compress_batch)."""
        code = np.asarray(code, np.float64)
        if max_bytes is not None:
            return self._fitted(code, max_bytes)
        return self._pack(code, mode, step)

    def decompress_batch(self, files):
        """list of `.cvae` byte strings -> uint8 images (N, H, W, C)."""
        parsed = [self._parse(data) for data in files]
        images = self.decode(np.stack([code for code, _ in parsed]))
        return np.stack([image if frame is None else self._with_frame(image, frame)
                         for image, (_, frame) in zip(images, parsed)])

    @staticmethod
    def _with_frame(image, frame):
        try:
            return detail.apply(image, frame)
        except ValueError as error:
            raise FormatError(str(error)) from None

    def decode(self, codes):
        """Latent codes (N, latent_dim) -> uint8 images, as decompression writes them."""
        return to_uint8(self.model.decode(codes))

    def _pack(self, code, mode, step):
        parameters, payload = self._quantize(code, mode, step)
        header = Header(mode, self.fingerprint(mode), parameters)
        return codec_format.pack(header, payload)

    def _fitted(self, code, max_bytes):
        """The entropy file with the finest step that fits `max_bytes`."""
        smallest = None
        for step in MAX_BYTES_STEPS:
            if step * min(self._require_table().posterior_std) < _SMALLEST_STEP:
                continue
            data = self._pack(code, "entropy", step)
            if len(data) <= max_bytes:
                return data
            smallest = len(data)
        raise CvaeError(f"cannot fit in {max_bytes} bytes: the smallest file for this image "
                        f"takes {smallest}")

    # --- one file -----------------------------------------------------------

    def latent_code(self, data):
        """The dequantized latent code a `.cvae` file holds (checked against this model)."""
        return self._parse(data)[0]

    def _parse(self, data):
        """`.cvae` bytes -> (the dequantized code, the detail frame or None)."""
        header, payload = codec_format.parse(data)
        self._check_header(header)
        if header.mode != "detail":
            return self._dequantize(header, payload), None
        payload, frame = codec_format.split_detail(payload)
        if not frame:
            raise FormatError("truncated: the detail file has no detail layer")
        return self._dequantize(Header("entropy", header.fingerprint, header.parameters),
                                payload), frame

    def _check_header(self, header):
        if header.mode in _TABLE_MODES and self.table is None:
            raise CvaeError("entropy-coded file, but this model has no codec table "
                            "(run `cvae calibrate`)")
        fingerprint = self.fingerprint(header.mode)
        if header.fingerprint != fingerprint:
            raise FormatError(f"made by another model (fingerprint {header.fingerprint.hex()}, "
                              f"this model's is {fingerprint.hex()})")

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
        steps, spreads, bound = self._entropy_model(step)
        active = np.asarray(self.table.active, bool)
        symbols = np.clip(np.round(code[active] / steps), -bound, bound).astype(np.int32)
        return (step,), entropy_coding.encode(symbols, spreads, bound)

    def _dequantize(self, header, payload):
        latent_dim = self.config.latent_dim
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
        steps, spreads, bound = self._entropy_model(step)
        try:
            symbols = entropy_coding.decode(payload, spreads, bound)
        except ValueError as error:
            raise FormatError(str(error)) from None
        code = np.zeros(latent_dim)
        code[np.asarray(self.table.active, bool)] = symbols * steps
        return code

    def _entropy_model(self, step):
        """For a step: each active dimension's step (latent units), the coder's
        Gaussian spread in symbols, and the symbols' common bound."""
        if not (math.isfinite(step) and step > 0):
            raise FormatError(f"invalid quantization step {step}")
        steps = self._require_table().quantization_steps(step)
        if len(steps) and steps.min() < _SMALLEST_STEP:
            raise FormatError(f"quantization step {step} is too fine for this model's table")
        bound = math.ceil(_PRIOR_BOUND / steps.min()) if len(steps) else 1
        return steps, self.table.active_code_std() / steps, bound

    def _require_table(self):
        if self.table is None:
            raise CvaeError("the entropy mode needs the model's codec table "
                            f"(<model>{TABLE_SUFFIX}); make it with `cvae calibrate`")
        return self.table


def calibrate(model, images, steps=CALIBRATION_STEPS, log=None):
    """Measure a model's codec table on (training) images.

    Each quality level's step is the coarsest of `steps` whose decompressed
    PSNR stays within QUALITY_LEVELS[level] dB of the unquantized
    reconstruction's (the finest step if none does); the default step is
    "medium"'s.
    """
    from cvae.evaluation import metrics  # Deferred: it loads the Keras backend.
    from cvae.model.saving import in_float32

    log = log or (lambda message: None)
    model = in_float32(model)  # What the codec computes in.
    z_mean, z_log_var = model.encode(images)
    active = metrics.active_dimensions(z_mean)
    posterior_std = np.exp(np.mean(0.5 * z_log_var.astype(np.float64), axis=0))
    code_std = np.maximum(np.std(z_mean.astype(np.float64), axis=0), 1e-3)
    originals = to_uint8(images)
    reference = float(np.mean(metrics.psnr(originals / 255.0,
                                           to_uint8(model.decode(z_mean)) / 255.0)))
    log(f"{int(active.sum())} of {len(active)} dimensions active; unquantized PSNR "
        f"{reference:.2f} dB on {len(images)} images")
    table = CodecTable(tuple(posterior_std.tolist()), tuple(bool(a) for a in active),
                       steps[0], weights_sha256(model),
                       code_std=tuple(round(float(s), 6) for s in code_std))
    codec = Codec(model, table)
    quality_steps, measured = {}, {}
    for step in sorted(steps):
        files = codec.compress_batch(images, "entropy", step)
        psnr = float(np.mean(metrics.psnr(originals / 255.0,
                                          codec.decompress_batch(files) / 255.0)))
        mean_bytes = float(np.mean([len(f) for f in files]))
        measured[str(step)] = {"bytes": mean_bytes, "psnr": psnr}
        log(f"step {step:g}: {mean_bytes:.1f} bytes, PSNR {psnr:.2f} dB")
        for level, max_loss in QUALITY_LEVELS.items():
            if reference - psnr <= max_loss:
                quality_steps[level] = step
    for level in QUALITY_LEVELS:  # A level no step meets gets the finest step.
        quality_steps.setdefault(level, min(steps))
    return dataclasses.replace(table, step=quality_steps[DEFAULT_QUALITY],
                               quality_steps=quality_steps, calibration={
                                   "images": len(images), "quality_levels_db": QUALITY_LEVELS,
                                   "unquantized_psnr": reference, "steps": measured})


# --- the simple API: cvae.compress(image, model), cvae.decompress(data, model) ---

_CODECS = weakref.WeakKeyDictionary()


RUNTIMES = ("auto", "litert", "keras")


def load_codec(path=None, runtime="auto", refine_steps=0):
    """The Codec of a model file (default: the default model) with the table
    saved beside it (MODEL.codec.json), when that table was measured for these
    weights; found exactly like the mixture beside a model.

    runtime: "litert" runs the LiteRT files beside the model (no TensorFlow;
    see `cvae.codec.litert`), "keras" the Keras model, "auto" LiteRT when
    its files are there and were made from this model file; refine_steps
    (see `Codec.encode`) needs the Keras model, so "auto" picks it then."""
    import warnings

    from cvae.model.saving import default_model_path, load_model

    if runtime not in RUNTIMES:
        raise CvaeError(f"unknown runtime {runtime!r}; choose one of {RUNTIMES}")
    path = Path(path) if path is not None else default_model_path()
    if runtime == "auto":
        runtime = "litert" if litert_status(path)[0] and not refine_steps else "keras"
    if runtime == "litert":
        codec = Codec(LiteModel(path), refine_steps=refine_steps)
    else:
        # Hashes the weights, once.
        codec = Codec(load_model(path), refine_steps=refine_steps)
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
